"""`harness report DIR`: rebuild the comparison tables and report files from DIR's store."""

from __future__ import annotations

from pathlib import Path

from harness.commands.output import add_format_option, emit

NAME = "report"
HELP = "rebuild results.csv and report.md/html from a results directory and print the tables"


def configure(parser) -> None:
    parser.add_argument("directory", type=Path, help="a directory written by `harness run --out`")
    add_format_option(parser)


def execute(args, host) -> int:
    from harness.report import comparison_tables, summarise, write_reports
    from harness.store import Store, find_store

    find_store(args.directory)
    store = Store(args.directory)
    df = store.results()
    runs = store.runs()
    outputs = store.outputs()
    meta = {"runs": ", ".join(r["run_id"] for r in runs)}
    paths = write_reports(df, args.directory, meta=meta, outputs=outputs)
    store.close()
    if args.format == "json":
        emit(summarise(df).to_dict(orient="records"), "json")
    else:
        for dataset, table in comparison_tables(df, "quality", outputs).items():
            print(f"## {dataset}\n\n{table.to_markdown()}\n")
        print(f"(speed figures are in {paths['markdown']})\n")
        print(f"report in {paths['markdown']}")
    return 0
