"""`harness plugins`: installed plugins, their versions and hooks; failed plugins with their error."""

from harness.commands.output import add_format_option, emit

NAME = "plugins"
HELP = "list installed plugins (name, version, hooks) and plugins that failed to load"


def configure(parser) -> None:
    add_format_option(parser)


def execute(args, host) -> int:
    host.registry  # run the registration hooks so their errors are recorded
    rows = []
    for name, info in sorted(host.plugins.items()):
        status = "blocked" if info.blocked else ("failed" if info.error else "ok")
        rows.append({"name": name, "version": info.version, "module": info.module, "status": status,
                     "hooks": info.hooks if args.format == "json" else ", ".join(h.replace("harness_", "") for h in info.hooks),
                     "error": info.error or ""})
    emit(rows, args.format, ["name", "version", "status", "hooks", "error"] if args.format == "table" else None)
    return 0
