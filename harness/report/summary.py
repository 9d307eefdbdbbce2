"""The summary every report view reads: ok measurements aggregated over seeds, one row per
(dataset, model, metric identity).

Cells aggregate over seeds: the mean, with the standard error across seeds when there are several
seeds and the measurement's own standard error when there is one. The regression gate reads the same
summary (:mod:`harness.regression.results`), so a report and the gate never disagree on a number.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import QUALITY, SPEED

SUMMARY_COLUMNS = ["dataset", "model", "family", "metric", "label", "unit", "estimator", "mean", "stderr", "seeds",
                   "higher_is_better", "seed_list", "seed_values"]

# A sampling variant's identity carries its setting as a suffix: ``fid@2000[steps=10]``.
_VARIANT = re.compile(r"^(?P<base>.+?)\[(?P<variant>[^\[\]]+)\]$")


def split_variant(label: str) -> tuple:
    """``(base identity, variant or None)``: ``fid@2000[steps=10]`` -> ``("fid@2000", "steps=10")``."""
    m = _VARIANT.match(str(label))
    return (m.group("base"), m.group("variant")) if m else (str(label), None)


def metric_label(row) -> str:
    """The column a measurement goes in: its identity (``fid@2000`` where the sample count is part of
    what the number means, else the name), plus its unit."""
    label = row.get("label") or row["metric"]
    unit = row.get("unit") or ""
    return f"{label} [{unit}]" if unit else label


def kind_of(metric: str, estimator: str, outputs: Optional[Mapping]) -> str:
    """quality or speed: the declaration's kind; an undeclared measurement is speed when measured."""
    out = (outputs or {}).get(metric)
    if out is not None:
        return out.kind
    return SPEED if estimator == "measured" else QUALITY


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Aggregate ok measurements over seeds: one row per (dataset, model, metric identity).

    The mean over seeds, with the standard error across seeds when there are several seeds and the
    measurement's own standard error when there is one. Units or estimators that differ between seeds
    (results of different code in one directory) are joined with `` | `` so they show. A measurement made
    again for the same seed (``run --resume`` with another metric selection measures a model again under a
    new job) counts once: the newest. The report tables and the regression gate both read this summary.
    ``seed_values`` lists (seed, value)."""
    ok = df[(df["status"] == "ok") & df["metric"].notna()].copy()
    if ok.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    ok["label"] = ok["id"].fillna(ok["metric"]) if "id" in ok else ok["metric"]
    if "finished" in ok:
        same = [c for c in ("dataset", "model", "label", "seed", "profile") if c in ok]
        ok = ok.sort_values("finished", kind="stable").drop_duplicates(same, keep="last")
    ok["unit"] = ok["unit"].fillna("")
    ok["estimator"] = ok["estimator"].fillna("")
    ok["family"] = ok["family"].fillna("") if "family" in ok else ""
    rows = []
    for (dataset, model, label), g in ok.groupby(["dataset", "model", "label"], sort=True):
        values = g["value"].astype(float)
        k = len(values)
        if k > 1:
            stderr = float(values.std(ddof=1) / math.sqrt(k))
        else:
            stderr = float(g["stderr"].iloc[0]) if pd.notna(g["stderr"].iloc[0]) else math.nan
        hib = g["higher_is_better"].dropna() if "higher_is_better" in g else pd.Series(dtype=float)
        rows.append(dict(dataset=dataset, model=model, family=_joined(g["family"]), metric=str(g["metric"].iloc[0]),
                         label=label, unit=_joined(g["unit"]), estimator=_joined(g["estimator"]),
                         mean=float(values.mean()), stderr=stderr, seeds=k,
                         higher_is_better=bool(hib.iloc[0]) if len(hib) else None,
                         seed_list=sorted(int(s) for s in g["seed"]),
                         seed_values=sorted((int(s), float(v)) for s, v in zip(g["seed"], values))))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _joined(values) -> str:
    return " | ".join(sorted({str(v) for v in values if isinstance(v, str)}))


def problems(df: pd.DataFrame) -> pd.DataFrame:
    """Failed jobs and metrics, and skipped pairs and metrics, with their reasons, one row each."""
    bad = df[df["status"].isin(["failed", "skipped"])]
    cols = ["status", "model", "dataset", "seed", "metric", "reason"]
    return bad[cols].drop_duplicates().sort_values(["status", "model", "dataset", "seed"]).reset_index(drop=True)


def _seeds(values) -> str:
    seeds = sorted({int(s) for s in values if pd.notna(s)})
    return ", ".join(map(str, seeds))


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Every failed job or metric with its reason: (model, dataset, metric or "" for the whole job,
    seeds, reason)."""
    bad = df[df["status"] == "failed"].copy()
    return _grouped(bad, ["model", "dataset", "metric", "reason"])


def skipped_jobs(df: pd.DataFrame) -> pd.DataFrame:
    """Pairs that did not run (incompatible, data missing), with the reason: (model, dataset, seeds, reason)."""
    bad = df[(df["status"] == "skipped") & df["metric"].isna()].copy()
    return _grouped(bad, ["model", "dataset", "reason"])


def skipped_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Metrics that did not apply to a job that ran: (dataset, metric, reason, models)."""
    bad = df[(df["status"] == "skipped") & df["metric"].notna()].copy()
    if bad.empty:
        return pd.DataFrame(columns=["dataset", "metric", "reason", "models"])
    bad["reason"] = bad["reason"].fillna("")
    rows = [dict(dataset=d, metric=m, reason=r, models=", ".join(sorted(set(g["model"]))))
            for (d, m, r), g in bad.groupby(["dataset", "metric", "reason"], sort=True)]
    return pd.DataFrame(rows, columns=["dataset", "metric", "reason", "models"])


def _grouped(bad: pd.DataFrame, keys: list) -> pd.DataFrame:
    columns = keys[:-1] + ["seeds", "reason"]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    bad = bad.assign(**{k: bad[k].fillna("") for k in keys})
    rows = []
    for values, g in bad.groupby(keys, sort=True):
        row = dict(zip(keys, values))
        row["seeds"] = _seeds(g["seed"])
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
