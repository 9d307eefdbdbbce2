"""The summary every view of results reads: ok measurements aggregated over seeds, one row per
(dataset, model, metric identity).

Cells aggregate over seeds: the mean, with the standard error across seeds when there are several
seeds and the measurement's own standard error when there is one. The report's tables and the
comparison of two result sets (:mod:`harness.comparison`: ``compare`` and ``report A B``) read this one
summary, so a report and the gate never disagree on a number.

Each row also says which jobs it summarises (``seed_keys``: (seed, job key)), each seed's own standard
error (``seed_stderrs``) and the protocol of its measurements (``protocol``, :func:`combined_protocol`).
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Optional

import pandas as pd

from harness.jobs import JobStatus

SUMMARY_COLUMNS = ["dataset", "model", "family", "metric", "label", "unit", "estimator", "mean", "stderr", "seeds",
                   "higher_is_better", "seed_list", "seed_values", "seed_stderrs", "seed_keys", "protocol"]

# How a protocol setting reads when the seeds of one row were measured with different values.
MIXED = " | "


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Aggregate ok measurements over seeds: one row per (dataset, model, metric identity).

    The mean over seeds, with the standard error across seeds when there are several seeds and the
    measurement's own standard error when there is one. Units or estimators that differ between seeds
    (results of different code in one directory) are joined with `` | `` so they show. A measurement made
    again for the same seed (``run --resume`` with another metric selection measures a model again under a
    new job) counts once: the newest. ``seed_values`` lists (seed, value), ``seed_stderrs`` (seed, the
    measurement's own standard error or NaN), ``seed_keys`` (seed, job key; empty without job keys)."""
    ok = df[(df["status"] == JobStatus.OK) & df["metric"].notna()].copy()
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
        own = [float(e) if pd.notna(e) else math.nan for e in g["stderr"]]
        rows.append(dict(dataset=dataset, model=model, family=_joined(g["family"]), metric=str(g["metric"].iloc[0]),
                         label=label, unit=_joined(g["unit"]), estimator=_joined(g["estimator"]),
                         mean=float(values.mean()), stderr=stderr, seeds=k,
                         higher_is_better=bool(hib.iloc[0]) if len(hib) else None,
                         seed_list=sorted(int(s) for s in g["seed"]),
                         seed_values=sorted((int(s), float(v)) for s, v in zip(g["seed"], values)),
                         seed_stderrs=sorted((int(s), e) for s, e in zip(g["seed"], own)),
                         seed_keys=sorted((int(s), str(k)) for s, k in zip(g["seed"], g["key"])) if "key" in g else [],
                         protocol=combined_protocol(g["protocol"]) if "protocol" in g else None))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def combined_protocol(texts: Iterable) -> Optional[dict]:
    """The protocol of a row from its seeds' (JSON text or dicts; None or NaN where not recorded): None when
    no seed recorded one; else each setting any seed recorded, with its value where the seeds agree and
    their values joined with `` | `` where they do not (so a comparison sees that they differ)."""
    found = [json.loads(t) if isinstance(t, str) else t for t in texts if isinstance(t, (str, dict)) and t != ""]
    if not found:
        return None
    out = {}
    for key in sorted({k for p in found for k in p}):
        values = [p[key] for p in found if key in p]
        distinct = sorted({json.dumps(v, sort_keys=True) for v in values})
        out[key] = values[0] if len(distinct) == 1 else MIXED.join(distinct)
    return out


def _joined(values) -> str:
    return " | ".join(sorted({str(v) for v in values if isinstance(v, str)}))
