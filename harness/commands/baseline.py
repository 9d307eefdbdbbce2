"""`harness baseline save RESULTS --to FILE [--merge]` and `harness baseline show FILE`: the committed
summary that `harness compare` checks results against (see harness/regression/ and docs/regression.md).
`--merge` adds the results' machine's speed section to an existing baseline, leaving its quality rows."""

from __future__ import annotations

from pathlib import Path

from harness.cli_support.output import add_format_option, emit
from harness.contracts import UserError

NAME = "baseline"
HELP = "save a results set as a regression baseline (per model, dataset and metric over seeds), or show one"


def configure(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    save = actions.add_parser("save", help="summarise RESULTS over seeds into a baseline JSON file",
                              description="Summarise RESULTS (a results directory, or a results.csv) per model, "
                                          "dataset and metric across seeds, stamped with dataset hashes, profile, "
                                          "versions and hyperparameter hashes; speed rows go in a section of the "
                                          "machine that made them. With --merge, only that machine's speed section "
                                          "is added to (or replaced in) the existing FILE.")
    save.add_argument("results", type=Path, help="a directory written by `harness run --out`, or its results.csv")
    save.add_argument("--to", type=Path, required=True, metavar="FILE",
                      help="where to write the baseline, e.g. reports/baseline/smoke.json")
    save.add_argument("--merge", action="store_true",
                      help="add the results' machine's speed section to the existing FILE (replacing that machine's "
                           "if there is one); its quality rows and other machines stay as they are")
    show = actions.add_parser("show", help="print a baseline file")
    show.add_argument("file", type=Path, help="a baseline JSON file")
    add_format_option(show)


def installed_outputs(host) -> dict:
    """Measurement name -> Output over the installed metrics (for CSV input, and for measurements a
    results store does not declare)."""
    try:
        return {name: out for name, (_, out) in host.registry.output_declarations().items()}
    except Exception:  # a broken plugin must not stop a baseline being read
        return {}


def installed_plugins(host) -> dict:
    """Plugin name -> "" (loaded), "disabled" (HARNESS_DISABLE_PLUGINS) or why it failed to load: which
    baseline rows belong to plugins that are not installed here (see harness.regression.compare)."""
    from harness.regression import DISABLED

    return {name: DISABLED if info.blocked else (info.error or "") for name, info in host.plugins.items()}


def execute(args, host) -> int:
    from harness.regression import (load_results, make_baseline, merge_speed, read_baseline, render_baseline,
                                    write_baseline)

    if args.action == "show":
        doc = read_baseline(args.file)
        if args.format == "json":
            emit(doc, "json")
        else:
            print(render_baseline(doc), end="")
        return 0
    results = load_results(args.results, outputs=installed_outputs(host))
    if args.merge:
        if not args.to.exists():
            raise UserError(f"--merge adds to an existing baseline, and there is none at {args.to}; "
                            "save one without --merge first")
        doc, machine, replaced = merge_speed(read_baseline(args.to), results, str(args.to))
        path = write_baseline(doc, args.to)
        section = doc["machines"][machine]
        print(f"{'replaced' if replaced else 'added'} the speed section of machine {machine} "
              f"({section['description']}): {len(section['entries'])} entries, seeds "
              f"{', '.join(map(str, section['seeds']))}; {len(doc['machines'])} machine(s) in {path}; "
              f"{len(doc['entries'])} quality entries unchanged")
        for note in results.notes:
            print(f"note: {note}")
        return 0
    doc = make_baseline(results)
    path = write_baseline(doc, args.to)
    models = len(doc["models"])
    speed = sum(len(s["entries"]) for s in doc["machines"].values())
    machines = ", ".join(f"{m} ({s['description']})" for m, s in doc["machines"].items()) or "none"
    print(f"saved {len(doc['entries'])} quality entries and {speed} speed entries ({models} models, "
          f"{len(doc['datasets'])} datasets, profile {doc['profile']}, seeds {', '.join(map(str, doc['seeds']))}; "
          f"speed from machine {machines}) to {path}")
    for note in results.notes:
        print(f"note: {note}")
    return 0
