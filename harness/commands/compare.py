"""`harness compare RESULTS --baseline FILE`: the regression gate.

Exit 0 when nothing regressed, 1 on a regression (worse beyond floor and noise, a failed job, a
changed or missing row), 2 when the baseline does not match (another profile or dataset hash) or
on a usage error. Speed rows follow the machine rule (as measured on the same machine, normalised by
the runs' calibrations on another, or not at all with --quality-only); rows of a plugin that is not
installed are listed apart. ``--baseline`` takes a baseline file, or a results directory whose
summary serves as the baseline; against a directory, rows whose jobs kept per-example values on both
sides are judged paired. See harness/regression/ and docs/regression.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli_support.output import add_format_option, emit

NAME = "compare"
HELP = "compare results with a baseline: exit 1 on a regression beyond tolerance and seed noise"


def configure(parser) -> None:
    from harness.regression import DEFAULT_ALPHA, MACHINE_SPREAD

    parser.add_argument("results", type=Path, help="a directory written by `harness run --out`, or its results.csv")
    parser.add_argument("--baseline", type=Path, required=True, metavar="FILE|DIR",
                        help="a baseline written by `harness baseline save`, e.g. reports/baseline/smoke.json, or a "
                             "results directory (then rows with per-example values on both sides are judged paired)")
    parser.add_argument("--summary", type=Path, metavar="OUT.md",
                        help="also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"significance level of the one-sided tests (default {DEFAULT_ALPHA:g})")
    parser.add_argument("--allow-missing", action="store_true",
                        help="baseline rows absent from the results do not fail the gate (they are still listed)")
    parser.add_argument("--quality-only", action="store_true",
                        help="do not judge speed rows (throughputs, latencies, memory, FLOPs); quality rows only")
    parser.add_argument("--require-all-plugins", action="store_true",
                        help="baseline rows of plugins that are not installed fail the gate (by default they are "
                             "listed apart as not installed)")
    parser.add_argument("--machine-spread", type=float, default=MACHINE_SPREAD, metavar="X",
                        help="across machines, a rate or duration is worse only beyond its declared floor times X "
                             f"(default {MACHINE_SPREAD:g}; see docs/regression.md)")
    parser.add_argument("--all-rows", action="store_true",
                        help="list unchanged, not compared and not installed rows too")
    add_format_option(parser)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def execute(args, host) -> int:
    from harness.commands.baseline import installed_outputs, installed_plugins
    from harness.regression import BaselineMismatch, baseline_source, compare, load_results

    outputs = installed_outputs(host)
    doc, made_from = baseline_source(args.baseline, outputs)
    results = load_results(args.results, outputs=outputs)
    try:
        comparison = compare(doc, results, alpha=args.alpha, allow_missing=args.allow_missing,
                             baseline_path=str(args.baseline), quality_only=args.quality_only,
                             plugins=installed_plugins(host), require_all_plugins=args.require_all_plugins,
                             machine_spread=args.machine_spread, reference_results=made_from)
    except BaselineMismatch as exc:
        if args.summary:
            _write(args.summary, "## Regression check: BASELINE DOES NOT MATCH\n\n```\n" + str(exc) + "\n```\n")
        raise
    text = comparison.to_markdown(str(args.baseline), all_rows=args.all_rows)
    if args.summary:
        _write(args.summary, text)
    if args.format == "json":
        emit(comparison.to_dict(), "json")
    else:
        print(text, end="")
    if comparison.failures and args.format != "json":
        print(f"regression check failed: {len(comparison.failures)} row(s); see the table above", file=sys.stderr)
    return comparison.exit_code
