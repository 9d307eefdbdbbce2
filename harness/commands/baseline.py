"""`harness baseline save RESULTS --to FILE` and `harness baseline show FILE`: the committed summary
that `harness compare` checks results against (see harness/regression.py and docs/regression.md)."""

from __future__ import annotations

from pathlib import Path

from harness.commands.output import add_format_option, emit

NAME = "baseline"
HELP = "save a results set as a regression baseline (per model, dataset and metric over seeds), or show one"


def configure(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    save = actions.add_parser("save", help="summarise RESULTS over seeds into a baseline JSON file",
                              description="Summarise RESULTS (a results directory, or a results.csv) per model, "
                                          "dataset and metric across seeds, stamped with dataset hashes, profile, "
                                          "versions and hyperparameter hashes.")
    save.add_argument("results", type=Path, help="a directory written by `harness run --out`, or its results.csv")
    save.add_argument("--to", type=Path, required=True, metavar="FILE",
                      help="where to write the baseline, e.g. reports/baseline/smoke.json")
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


def execute(args, host) -> int:
    from harness.regression import load_results, make_baseline, read_baseline, render_baseline, write_baseline

    if args.action == "show":
        doc = read_baseline(args.file)
        if args.format == "json":
            emit(doc, "json")
        else:
            print(render_baseline(doc), end="")
        return 0
    results = load_results(args.results, outputs=installed_outputs(host))
    doc = make_baseline(results)
    path = write_baseline(doc, args.to)
    models = len(doc["models"])
    print(f"saved {len(doc['entries'])} entries ({models} models, {len(doc['datasets'])} datasets, profile "
          f"{doc['profile']}, seeds {', '.join(map(str, doc['seeds']))}) to {path}")
    for note in results.notes:
        print(f"note: {note}")
    return 0
