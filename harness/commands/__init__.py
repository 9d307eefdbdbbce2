"""CLI subcommands, one module each. A module exposes NAME, HELP, configure(parser) and
execute(args, host) -> exit code (0 ok, 1 something failed, 2 usage error)."""

COMMANDS = ["plugins", "list", "datasets", "run", "evaluate", "evaluate_samples", "report", "baseline", "compare",
            "check", "new_plugin", "history", "cluster", "store"]
