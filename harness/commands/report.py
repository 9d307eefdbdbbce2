"""`harness report DIR`: rewrite the files every run writes from DIR's store and print its summary;
`report DIR --format NAME`: one report format alone (latex: booktabs tables for a paper; html, markdown,
csv, terminal, or one a plugin registers); `report DIR_A DIR_B`: two runs side by side."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli_support import measure
from harness.contracts import UserError

NAME = "report"
HELP = ("rebuild report.html/md and results.csv/json from a results directory; with two directories, "
        "compare them cell by cell; --format latex writes booktabs tables, --format NAME any report format")

# The command's own views: the summary for people, or for machines; any other --format names a report format.
VIEWS = ("table", "json")


def configure(parser) -> None:
    parser.add_argument("directories", type=Path, nargs="+", metavar="DIR",
                        help="a directory written by `harness run --out`; give two (A B) to set B against A")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the files go (default: DIR for one directory, DIR_B for two)")
    parser.add_argument("--format", default="table", metavar="NAME",
                        help="table: rewrite the files every run writes and print the summary for people "
                             "(default); json: the same, the summary for machines; or a report format to write "
                             "alone: latex (tables.tex, booktabs, also printed), html, markdown, csv, terminal, "
                             "or one a plugin registers (`python -m harness list report-formats`)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="significance level when comparing two runs (default: compare's, 0.01)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where user-supplied data lives, for the test images beside the samples "
                             "(default $HARNESS_DATA_ROOT or ./datasets)")


def execute(args, host) -> int:
    dirs = args.directories
    if len(dirs) > 2:
        raise UserError(f"report takes one results directory, or two to compare (A B); got {len(dirs)}")
    spec = _format(host, args.format)
    if len(dirs) == 2:
        if spec is not None:
            raise UserError(f"--format {spec.name} takes one results directory")
        return _pair(args, host)
    if args.alpha is not None:
        raise UserError("--alpha applies when comparing two directories (report DIR_A DIR_B)")
    if spec is not None:
        return _one_format(args, host, spec)
    return _single(args, host)


def _format(host, name: str):
    """The report format ``--format`` names, or None for the command's own views."""
    if name in VIEWS:
        return None
    try:
        return host.report_format(name)
    except UserError as exc:
        raise UserError(f"{exc}; or --format {' or '.join(VIEWS)}: the summary for people or for machines") from None


def _read(args, host):
    from harness.report import SummarisedRun
    from harness.report.data import DatasetSource

    return SummarisedRun.read(args.directories[0], source=DatasetSource(host, args.data_root))


def _single(args, host) -> int:
    from harness.cli_support.output import emit
    from harness.report.formats import write_every_run

    run = _read(args, host)
    formats = host.registry.report_formats
    paths = write_every_run(run, formats, args.out or run.directory)
    if args.format == "json":
        emit(run.summary.drop(columns=["seed_values"]).to_dict(orient="records"), "json")
    else:
        measure.show(run, formats, paths)
        where = measure.pointers(paths, ("markdown", "csv"))
        if where:
            print(where)
    return 0


def _one_format(args, host, spec) -> int:
    """One report format: printed (a stdout format), or written into --out (default DIR) and, where the
    format says so, printed too."""
    from harness.report.formats import write

    run = _read(args, host)
    if spec.to_stdout:
        print(spec.render(run))
        return 0
    path = write(spec, run, args.out or run.directory)
    if spec.prints:
        text = path.read_text(encoding="utf-8")
        print(text, end="" if text.endswith("\n") else "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _pair(args, host) -> int:
    from harness.commands.baseline import installed_outputs
    from harness.cli_support.output import emit
    from harness.report import atomic_write
    from harness.report.pair import compare_runs
    from harness.report.pair_render import html_pair, markdown_pair, terminal_lines

    a, b = args.directories
    pair = compare_runs(a, b, installed_outputs(host), args.alpha)
    out = args.out or (b if b.is_dir() else b.parent)  # next to B, a directory or its results.csv
    paths = {"html": out / "comparison.html", "markdown": out / "comparison.md"}
    atomic_write(paths["html"], html_pair(pair))
    atomic_write(paths["markdown"], markdown_pair(pair))
    if args.format == "json":
        emit({**pair.to_dict(), "files": {k: str(v) for k, v in paths.items()}}, "json")
    else:
        print(terminal_lines(pair, paths["html"]))
    return 0
