"""`harness report DIR`: rebuild the report files from DIR's store; `report DIR_A DIR_B`: two runs side
by side; `report DIR --format latex`: booktabs tables for a paper."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.contracts import UserError

NAME = "report"
HELP = ("rebuild report.html/md and results.csv/json from a results directory; with two directories, "
        "compare them cell by cell; --format latex writes booktabs tables")

FORMATS = ["table", "json", "latex"]


def configure(parser) -> None:
    parser.add_argument("directories", type=Path, nargs="+", metavar="DIR",
                        help="a directory written by `harness run --out`; give two (A B) to set B against A")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the files go (default: DIR for one directory, DIR_B for two)")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table: the summary for people (default); json: for machines; latex: write "
                             "tables.tex (booktabs) and print it")
    parser.add_argument("--alpha", type=float, default=None,
                        help="significance level when comparing two runs (default: compare's, 0.01)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where user-supplied data lives, for the test images beside the samples "
                             "(default $HARNESS_DATA_ROOT or ./datasets)")


def execute(args, host) -> int:
    dirs = args.directories
    if len(dirs) > 2:
        raise UserError(f"report takes one results directory, or two to compare (A B); got {len(dirs)}")
    if len(dirs) == 2:
        if args.format == "latex":
            raise UserError("--format latex takes one results directory")
        return _pair(args, host)
    if args.alpha is not None:
        raise UserError("--alpha applies when comparing two directories (report DIR_A DIR_B)")
    if args.format == "latex":
        return _latex(args)
    return _single(args, host)


def _read(directory: Path, known=None):
    """The store's results, output declarations (those stored before outputs declared role and scaling
    completed from ``known``, the installed metrics') and runs."""
    from harness.store import Store

    store = Store(directory, read_only=True)
    try:
        return store.results(), store.outputs(known), store.runs()
    finally:
        store.close()


def _single(args, host) -> int:
    from harness.commands.baseline import installed_outputs
    from harness.commands.output import emit
    from harness.report import summarise, write_reports
    from harness.report.data import DatasetSource
    from harness.report.terminal import terminal_summary

    directory = args.directories[0]
    df, outputs, runs = _read(directory, installed_outputs(host))
    out = args.out or directory
    paths = write_reports(df, out, outputs=outputs, runs=runs, source=DatasetSource(host, args.data_root),
                          directory=directory)
    if args.format == "json":
        emit(summarise(df).drop(columns=["seed_values"]).to_dict(orient="records"), "json")
    else:
        print(terminal_summary(df, outputs, paths["html"]))
        print(f"tables in {paths['markdown']}, results in {paths['csv']}")
    return 0


def _latex(args) -> int:
    from harness.contracts import QUALITY, SPEED
    from harness.report import atomic_write, build_tables, summarise
    from harness.report.latex import latex_document

    directory = args.directories[0]
    df, outputs, _ = _read(directory)
    summary = summarise(df)
    quality, speed = build_tables(summary, outputs, QUALITY), build_tables(summary, outputs, SPEED)
    if not quality and not speed:
        raise UserError(f"no ok measurements in {directory}: no table to write")
    text = latex_document(quality, speed)
    path = (args.out or directory) / "tables.tex"
    atomic_write(path, text)
    print(text, end="")
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _pair(args, host) -> int:
    from harness.commands.baseline import installed_outputs
    from harness.commands.output import emit
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
