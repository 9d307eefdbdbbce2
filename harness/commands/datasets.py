"""`harness datasets`: every registered dataset with its declarations, split sizes, availability,
entropy and provenance hash; `datasets fetch NAME` downloads user-supplied data into the data root
(only ever on this explicit request) and `datasets check NAME` verifies it.

Listing all datasets loads each available one (built-ins take a few seconds in total); user-supplied
datasets whose files are missing are listed as unavailable with what is missing and where it goes.
Naming datasets (`datasets mnist`) insists on them: a missing or corrupted one is a user error
(exit 2). A dataset whose files are present but refused (corrupted, changed) also makes the full
listing exit 2, after printing it.
"""

from __future__ import annotations

import time

from harness.cli_support.output import add_format_option, emit
from harness.contracts import UserError
from harness.data import provenance_hash, resolve_data_root

NAME = "datasets"
HELP = ("list datasets (kind, shape, classes, levels, split sizes, availability, entropy, provenance); "
        "`datasets fetch NAME` downloads user-supplied data, `datasets check NAME` verifies it")
ACTIONS = ("list", "fetch", "check")

TABLE_COLUMNS = ["name", "kind", "shape", "classes", "levels", "train/val/test", "available", "entropy",
                 "provenance"]


def configure(parser) -> None:
    parser.add_argument("names", nargs="*", metavar="[ACTION] DATASET",
                        help="`DATASET ...`: only these (each must be available; default: all); "
                             "`fetch NAME ...`: download user-supplied data (MNIST, CIFAR-10) into the data root and "
                             "verify it; `check NAME ...`: verify files you put there yourself")
    parser.add_argument("--data-root", default=None,
                        help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    add_format_option(parser)


def describe_declarations(spec) -> dict:
    """A row for a dataset that could not be loaded: declarations only."""
    return {
        "name": spec.name, "kind": spec.kind.value, "shape": list(spec.event_shape),
        "classes": spec.num_classes, "levels": spec.levels, "entropy": spec.entropy,
        "entropy_stderr": spec.entropy_stderr if spec.entropy is not None else None,
        "feature_extractor": spec.feature_extractor, "tags": list(spec.tags), "version": spec.version,
        "description": spec.description, "available": False, "missing": None, "error": None,
        "splits": None, "provenance": None, "load_seconds": None,
    }


def describe(spec, root) -> dict:
    """One dataset's row: declarations, and if it is available, its split sizes and provenance.

    Raises :class:`UserError` if the data is present but refused (corrupted, changed)."""
    row = describe_declarations(spec)
    row["available"] = True
    missing = spec.check(root) if spec.check is not None else None
    if missing:
        row.update(available=False, missing=missing)
        return row
    start = time.perf_counter()
    splits = spec.load(root)
    row["load_seconds"] = round(time.perf_counter() - start, 3)
    row["splits"] = {name: len(getattr(splits, name)) for name in ("train", "val", "test")}
    # The same hash the runner stamps on every result (spec name and version included).
    row["provenance"] = provenance_hash(splits, f"{spec.name}:{spec.version}")
    return row


def _table_row(row: dict) -> dict:
    entropy = ""
    if row["entropy"] is not None:
        err = row["entropy_stderr"] or 0.0
        entropy = f"{row['entropy']:.4f} ± {err:.0e}" if err else f"{row['entropy']:.4f} (exact)"
    splits = row["splits"]
    available = "refused" if row["error"] else "yes" if row["available"] else "no"
    return {
        "name": row["name"], "kind": row["kind"], "shape": "x".join(map(str, row["shape"])),
        "classes": row["classes"] or "", "levels": row["levels"] or "",
        "train/val/test": "/".join(str(splits[k]) for k in ("train", "val", "test")) if splits else "",
        "available": available, "entropy": entropy,
        "provenance": (row["provenance"] or "")[:12],
    }


def fetch(specs, root) -> int:
    for spec in specs:
        if spec.fetch is None:
            how = "it is built in and needs no files" if spec.check is None else \
                f"its plugin offers no download; {spec.check(root) or 'its files are in place'}"
            raise UserError(f"nothing to fetch for {spec.name!r}: {how}")
    for spec in specs:
        print(f"{spec.name}: fetching into {root} ...", flush=True)
        for path in spec.fetch(root):
            print(f"  wrote {path}")
        row = describe(spec, root)
        splits = "/".join(str(row["splits"][k]) for k in ("train", "val", "test"))
        print(f"{spec.name}: verified, {splits} train/val/test, provenance {row['provenance'][:12]}")
    return 0


def check(specs, root, fmt: str) -> int:
    rows = []
    for spec in specs:
        row = describe(spec, root)  # files present but refused: UserError naming the file
        if not row["available"]:
            hint = (f" (or run `python -m harness datasets fetch {spec.name}`)"
                    if spec.fetch is not None and "datasets fetch" not in row["missing"] else "")
            raise UserError(f"dataset {spec.name!r} is not available: {row['missing']}{hint}")
        rows.append(row)
    if fmt == "json":
        emit(rows, "json")
    else:
        for row in rows:
            splits = "/".join(str(row["splits"][k]) for k in ("train", "val", "test"))
            print(f"{row['name']}: ok, {splits} train/val/test, provenance {row['provenance'][:12]}")
    return 0


def execute(args, harness) -> int:
    root = resolve_data_root(args.data_root)
    table = harness.registry.datasets
    action = args.names[0] if args.names and args.names[0] in ACTIONS else "list"
    names = args.names[1:] if args.names and args.names[0] in ACTIONS else args.names
    if action in ("fetch", "check"):
        if not names:
            raise UserError(f"`datasets {action}` needs a dataset name, e.g. `datasets {action} mnist`")
        specs = [harness.dataset(name) for name in names]
        return fetch(specs, root) if action == "fetch" else check(specs, root, args.format)
    args.names = names
    if args.names:
        specs = [harness.dataset(name) for name in args.names]  # unknown names: UserError
    else:
        specs = [table[name] for name in sorted(table)]
    rows, refused = [], []
    for spec in specs:
        try:
            row = describe(spec, root)
        except UserError as exc:
            if args.names:
                raise
            row = {**describe_declarations(spec), "error": str(exc)}
            refused.append(spec.name)
        if args.names and not row["available"]:
            raise UserError(f"dataset {spec.name!r} is not available: {row['missing']}")
        rows.append(row)
    if args.format == "json":
        emit(rows, "json")
    else:
        emit([_table_row(r) for r in rows], "table", columns=TABLE_COLUMNS)
        notes = [f"- {r['name']}: {r['error'] or r['missing']}" for r in rows if r["error"] or r["missing"]]
        if notes:
            print("\n" + "\n".join(notes))
    if refused:
        raise UserError(f"refused: {', '.join(refused)} (see the listing for why)")
    return 0
