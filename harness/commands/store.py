"""`harness store check DIR`: is a results directory whole; `harness store rebuild DIR`: a new store
from what is intact (see :mod:`harness.storage.check` and :mod:`harness.storage.rebuild`)."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli_support.output import add_format_option, emit
from harness.contracts import UserError

NAME = "store"
HELP = ("`store check DIR`: verify a results directory (the store's integrity, every saved model's sha256, "
        "results.csv/json against the store); `store rebuild DIR`: a new store from results.csv/json, the saved "
        "models and the old store's readable rows")
ACTIONS = ("check", "rebuild")


def configure(parser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="check: list what is damaged (exit 1 if anything is); "
                                                        "rebuild: make a new store, keeping the old one beside it")
    parser.add_argument("directory", type=Path, metavar="DIR", help="a directory written by `harness run --out`")
    add_format_option(parser)


def execute(args, host) -> int:
    directory = args.directory
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory (give one written by `harness run --out`)")
    if args.action == "check":
        return _check(directory, args.format)
    return _rebuild(directory, host, args.format)


def _check(directory: Path, fmt: str) -> int:
    from harness.storage.check import ERROR, check_directory

    findings = check_directory(directory)
    errors = [f for f in findings if f.severity == ERROR]
    if fmt == "json":
        emit({"directory": str(directory), "ok": not errors, "findings": [f.as_dict() for f in findings]}, "json")
    else:
        for f in findings:
            print(f"{f.severity:6s}{f.subject}: {f.message}")
        verdict = f"{len(errors)} error(s)" if errors else "intact"
        notes = len(findings) - len(errors)
        print(f"{directory}: {verdict}" + (f", {notes} note(s)" if notes else ""))
    return 1 if errors else 0


def _rebuild(directory: Path, host, fmt: str) -> int:
    from harness.storage.check import ERROR, check_directory
    from harness.storage.rebuild import rebuild

    if not any((directory / name).exists() for name in ("results.sqlite", "results.csv", "results.json", "artifacts")):
        raise UserError(f"{directory} holds no results (no results.sqlite, results.csv, results.json or artifacts/)")
    done = rebuild(directory, host.registry.output_declarations())
    remaining = [f for f in check_directory(directory) if f.severity == ERROR]
    summary = {"store": str(done.path), "old_store": str(done.kept) if done.kept else None, "export": done.export,
               "jobs": done.counts, "tables_partly_lost": done.lost_tables,
               "remaining_errors": [f.as_dict() for f in remaining]}
    if fmt == "json":
        emit(summary, "json")
    else:
        c = done.counts
        print(f"rebuilt {done.path}: {c['store']} job(s) read from the old store, {c['export']} from "
              f"{done.export or 'no results.csv/json'}, {c['saved models']} from saved models alone")
        if done.lost_tables:
            print(f"rows the old store could not give back (from its tables {', '.join(done.lost_tables)}) were "
                  "taken from the export and the saved models where they hold them")
        if done.kept:
            print(f"the old store is kept as {done.kept}")
        for f in remaining:
            print(f"still wrong: {f.subject}: {f.message}", file=sys.stderr)
        print(f"next: `python -m harness report {directory}` writes the reports from it")
    return 1 if remaining else 0
