"""`harness plugins`: installed plugins, their versions, hooks and what each registered (models,
datasets, metrics, feature extractors, executors, report formats); failed plugins with their error."""

from harness.cli_support.output import add_format_option, emit

NAME = "plugins"
HELP = "list installed plugins (name, version, hooks, what they register) and plugins that failed to load"

# Beyond this many names of one kind, the table says how many instead.
NAMES_SHOWN = 3


def configure(parser) -> None:
    add_format_option(parser)


def registered(host) -> dict:
    """plugin name -> {kind: [names it registered]}, kinds as the registry names them."""
    out: dict = {}
    for (kind, name), plugin in sorted(host.registry.owners.items()):
        out.setdefault(plugin, {}).setdefault(kind, []).append(name)
    return out


def _registers_text(kinds: dict) -> str:
    """``executors: local; 8 datasets``: names where few, a count where many."""
    parts = []
    for kind, names in kinds.items():
        label = kind.replace("_", " ")
        parts.append(f"{label}: {', '.join(names)}" if len(names) <= NAMES_SHOWN else f"{len(names)} {label}")
    return "; ".join(parts)


def execute(args, host) -> int:
    host.registry  # run the registration hooks so their errors are recorded
    owned = registered(host)
    rows = []
    for name, info in sorted(host.plugins.items()):
        status = "blocked" if info.blocked else ("failed" if info.error else "ok")
        kinds = owned.get(name, {})
        rows.append({"name": name, "version": info.version, "module": info.module, "status": status,
                     "hooks": info.hooks if args.format == "json" else ", ".join(h.replace("harness_", "") for h in info.hooks),
                     "registers": kinds if args.format == "json" else _registers_text(kinds),
                     "error": info.error or ""})
    columns = ["name", "version", "status", "hooks", "registers", "error"]
    emit(rows, args.format, columns if args.format == "table" else None)
    return 0
