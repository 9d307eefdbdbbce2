"""`harness check NAME ...`: the conformance kit (harness.testing) on models, datasets and metrics.

A NAME is a model, dataset or metric, a plugin (everything it registers) or a model family. Exit 0
when every check passes (skipped checks, with their reasons, do not fail it), 1 with the failing
checks and why, 2 for an unknown name or a bad option.
"""

from __future__ import annotations

import json
import sys
import time

from harness.cli_support.output import add_format_option
from harness.commands.run import resolve_device
from harness.contracts import UserError
from harness.profiles import PROFILES

NAME = "check"
HELP = ("run the plugin conformance checks on models, datasets and metrics (by name, plugin or family): "
        "samples, seeds, likelihood kind and normalisation, labels, state round trip, declared splits, "
        "density and entropy, declared measurements")


def configure(parser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="a model, dataset, metric, plugin or model family (e.g. laplace, moons, nll, flows)")
    parser.add_argument("--all", action="store_true", help="every registered model, dataset and metric")
    parser.add_argument("--profile", default="smoke", choices=list(PROFILES),
                        help="whose hyperparameters fit the models (default smoke)")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE", dest="sets",
                        help="override a hyperparameter of the fitted models (repeatable), as for `run --set`, "
                             "e.g. fewer steps for a slow model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fitted models (default 0)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where to fit (default cpu)")
    parser.add_argument("--data-root", default=None,
                        help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    add_format_option(parser)


def _print_group(results, out) -> None:
    first = results[0]
    where = f"{first.subject} [{first.variant}]" if first.variant else first.subject
    out.write(f"{where}\n")
    for r in results:
        out.write(f"  {r.status:8s}{r.name:18s}{r.message}\n")
    out.flush()


def execute(args, host) -> int:
    from harness.testing.results import Report
    from harness.testing.session import Session

    if not args.names and not args.all:
        raise UserError("name what to check (a model, dataset, metric, plugin or family), or give --all")
    session = Session(args.names, everything=args.all, host=host, profile=args.profile, overrides=args.sets,
                      seed=args.seed, device=resolve_device(args.device), data_root=args.data_root)
    report = Report()
    start = time.perf_counter()
    try:
        for group, _ in session.planned():
            results = session.run_group(group)
            report.extend(results)
            if args.format != "json" and results:
                _print_group(results, sys.stdout)
    finally:
        session.close()
    seconds = time.perf_counter() - start
    if args.format == "json":
        json.dump({"ok": report.ok, "counts": report.counts(), "seconds": round(seconds, 2),
                   "results": [r.as_dict() for r in report.results]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"\n{report.summary()} in {seconds:.1f} s")
        if report.failures:
            print("\nfailed:\n" + "\n".join(r.describe() for r in report.failures))
    return 0 if report.ok else 1
