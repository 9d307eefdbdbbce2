"""`harness list`: models, datasets, metrics, executors, report formats and experiment trackers with their
declarations and the plugin that registered each; plugins that failed to load, with the names they would
have provided, on stderr."""

import sys

from harness.cli_support.output import add_format_option, emit

NAME = "list"
HELP = "list models, datasets, metrics, executors, report formats and trackers with their declarations"


# Kinds whose descriptions are too long for a table row (shown with --format json).
DESCRIBED_IN_JSON_ONLY = ("models", "datasets", "metrics")


def configure(parser) -> None:
    parser.add_argument("what", nargs="?", choices=["models", "datasets", "metrics", "executors", "report-formats",
                                                    "trackers", "all"], default="all",
                        help="which registry to list (default: all)")
    add_format_option(parser)


def _models(host):
    return [{
        "name": s.name, "family": s.family, "plugin": host.owner("models", s.name),
        "data_kinds": sorted(k.value for k in s.data_kinds),
        "capabilities": sorted(c.value for c in s.capabilities),
        "likelihood": s.likelihood.value if s.likelihood else "",
        "default_datasets": {p: s.datasets_for(p, host.registry.datasets) for p in ("smoke", "quick", "full")},
        "hyperparameters": s.hyperparameters.describe(),
        "description": s.description,
    } for s in sorted(host.registry.models.values(), key=lambda s: (s.family, s.name))]


def _datasets(host):
    return [{
        "name": s.name, "kind": s.kind.value, "shape": list(s.event_shape), "levels": s.levels or "",
        "classes": s.num_classes, "entropy": s.entropy if s.entropy is not None else "",
        "extractor": s.feature_extractor or "", "plugin": host.owner("datasets", s.name),
        "description": s.description,
    } for s in sorted(host.registry.datasets.values(), key=lambda s: s.name)]


def _metrics(host):
    return [{
        "name": s.name, "outputs": [o.as_dict() for o in s.outputs],
        "requires": sorted(c.value for c in s.requires), "data_kinds": sorted(k.value for k in s.data_kinds),
        "plugin": host.owner("metrics", s.name), "description": s.description,
    } for s in sorted(host.registry.metrics.values(), key=lambda s: s.name)]


def _executors(host):
    from harness.executors import OPTIONS

    return [{
        "name": s.name, "plugin": host.owner("executors", s.name),
        "accepts": [OPTIONS[o].flag for o in OPTIONS if o in s.accepts], "description": s.description,
    } for s in sorted(host.registry.executors.values(), key=lambda s: s.name)]


def _report_formats(host):
    return [{
        "name": s.name, "file": s.file, "every_run": s.every_run, "plugin": host.owner("report_formats", s.name),
        "description": s.description,
    } for s in sorted(host.registry.report_formats.values(), key=lambda s: s.name)]


def _trackers(host):
    return [{
        "name": s.name, "plugin": host.owner("trackers", s.name), "install": s.install,
        "options": {key: doc for key, doc in sorted(s.options.items())}, "description": s.description,
    } for s in sorted(host.registry.trackers.values(), key=lambda s: s.name)]


def _outputs_text(outputs) -> str:
    """``nll [nats, lower]``-style summary of a metric's outputs for the table."""
    return "; ".join(f"{o['name']} [{o['unit'] + ', ' if o['unit'] else ''}{'higher' if o['higher_is_better'] else 'lower'}]"
                     for o in outputs)


def _flat(rows):
    out = []
    for r in rows:
        r = dict(r)
        for k, v in r.items():
            if isinstance(v, list):
                r[k] = ", ".join(map(str, v))
            elif isinstance(v, dict):
                r[k] = "; ".join(f"{p}: {' '.join(map(str, n))}" for p, n in v.items())
        out.append(r)
    return out


def execute(args, host) -> int:
    from harness.plugin_failures import summary_lines

    for line in summary_lines(host):  # what is missing from the tables below, and why
        print(line, file=sys.stderr)
    tables = {"models": _models, "datasets": _datasets, "metrics": _metrics, "executors": _executors,
              "report-formats": _report_formats, "trackers": _trackers}
    chosen = list(tables) if args.what == "all" else [args.what]
    if args.format == "json":
        result = {name: tables[name](host) for name in chosen}
        emit(result if len(chosen) > 1 else result[chosen[0]], "json")
        return 0
    for name in chosen:
        rows = tables[name](host)
        for r in rows:
            if name in DESCRIBED_IN_JSON_ONLY:
                r.pop("description", None)
            r.pop("default_datasets", None)
            if "hyperparameters" in r:
                r["hyperparameters"] = len(r["hyperparameters"]["defaults"])
            if "outputs" in r:
                r["outputs"] = _outputs_text(r["outputs"])
            if "options" in r:
                r["options"] = list(r["options"])
        rows = _flat(rows)
        print(f"## {name}\n")
        emit(rows, "table")
        print()
    return 0
