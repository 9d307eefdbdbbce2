"""Shared printing helpers for CLI commands: tables for people, JSON for machines."""

from __future__ import annotations

import json
import sys

import pandas as pd


def add_format_option(parser) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="table for people (default), json for machines")


def emit(rows: list, fmt: str, columns: list | None = None, stream=None) -> None:
    stream = stream or sys.stdout
    if fmt == "json":
        json.dump(rows, stream, indent=2, default=str)
        stream.write("\n")
        return
    if not rows:
        stream.write("(none)\n")
        return
    df = pd.DataFrame(rows)
    if columns:
        df = df.reindex(columns=columns)
    stream.write(df.fillna("").to_markdown(index=False) + "\n")


def byte_size(n: int) -> str:
    """``123 B``, ``4.5 kB``, ``6.7 MB``, ``1.2 GB`` (powers of 1000)."""
    value = float(n)
    for suffix in ("B", "kB", "MB", "GB"):
        if value < 1000 or suffix == "GB":
            return f"{int(value)} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - unreachable
