"""``compare``: set a results set against a baseline, row by row.

Each (model, dataset, metric identity) of the baseline is decided by :func:`harness.regression.rule.decide`
with the tolerance its metric declares. Rows only in the results are *new*; rows only in the baseline
are *missing* (they fail the gate unless ``allow_missing``); a failed job or metric in the results is
*failed* and always fails the gate; a row whose unit, estimator or direction changed is *changed*
(not comparable) and fails the gate until the baseline is refreshed. A baseline made with another
profile, or with a different hash for a dataset both contain, raises
:class:`~harness.regression.baseline.BaselineMismatch` (the CLI exits 2) and nothing is compared.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import SPEED, SPEED_TOLERANCE, Output, Tolerance, UserError
from harness.regression.baseline import (REFRESH_COMMANDS, BaselineMismatch, baseline_entries, hparams_hash)
from harness.regression.results import Entry, ResultsSet, summarise
from harness.regression.rule import DEFAULT_ALPHA, Decision, decide

# Used only for a measurement that neither the results nor the baseline declares.
UNDECLARED_TOLERANCE = Tolerance(relative=0.05)


def tolerance_for(entry: Entry, outputs: Mapping, baseline_outputs: Mapping,
                  overrides: Optional[Mapping] = None) -> Tolerance:
    """A row's floor: an override (by identity or name), else the tolerance its metric declares (in the
    results' declarations, else the baseline's), else 5% (a ratio of 2 for a speed row)."""
    if overrides and (entry.id in overrides or entry.metric in overrides):
        return overrides.get(entry.id, overrides.get(entry.metric))
    declared = outputs.get(entry.metric)
    if declared is None and entry.metric in baseline_outputs:
        declared = Output.from_dict(baseline_outputs[entry.metric])
    if declared is not None:
        return declared.tolerance
    return SPEED_TOLERANCE if entry.kind == SPEED or entry.estimator == "measured" else UNDECLARED_TOLERANCE


FAILING = ("failed", "worse", "changed", "missing")
VERDICT_ORDER = ("failed", "worse", "changed", "missing", "better", "new", "unchanged")


@dataclass
class Row:
    verdict: str
    model: str
    dataset: str
    id: str
    unit: str = ""
    baseline: Optional[Entry] = None
    current: Optional[Entry] = None
    decision: Optional[Decision] = None
    tolerance: Optional[Tolerance] = None
    note: str = ""

    def as_dict(self) -> dict:
        d = {"verdict": self.verdict, "model": self.model, "dataset": self.dataset, "metric": self.id,
             "unit": self.unit, "note": self.note}
        for side in ("baseline", "current"):
            e = getattr(self, side)
            d[side] = None if e is None else {"mean": e.mean, "stderr": e.stderr, "n_seeds": e.n_seeds,
                                               "estimator": e.estimator}
        if self.decision is not None:
            d["delta"], d["ratio"] = _finite(self.decision.delta), _finite(self.decision.ratio)
            d["p_worse"], d["p_better"], d["test"] = self.decision.p_worse, self.decision.p_better, self.decision.test
        if self.tolerance is not None:
            d["tolerance"] = asdict(self.tolerance)
        return d


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


@dataclass
class Comparison:
    rows: list
    alpha: float
    allow_missing: bool
    notes: list
    baseline: dict
    results: ResultsSet

    @property
    def counts(self) -> dict:
        counts = {v: 0 for v in VERDICT_ORDER}
        for r in self.rows:
            counts[r.verdict] += 1
        return counts

    @property
    def failures(self) -> list:
        failing = set(FAILING) - ({"missing"} if self.allow_missing else set())
        return [r for r in self.rows if r.verdict in failing]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_dict(self) -> dict:
        return {"passed": not self.failures, "exit_code": self.exit_code, "alpha": self.alpha,
                "allow_missing": self.allow_missing, "counts": self.counts, "notes": self.notes,
                "baseline": {k: self.baseline.get(k) for k in ("source", "created", "profile", "seeds", "versions")},
                "results": {"source": self.results.source, "profiles": self.results.profiles,
                            "seeds": self.results.seeds, "versions": self.results.versions},
                "rows": [r.as_dict() for r in self.rows]}

    def to_markdown(self, baseline_path: str = "", all_rows: bool = False) -> str:
        from harness.regression.render import render_markdown

        return render_markdown(self, baseline_path, all_rows)


def check_match(doc: dict, results: ResultsSet, baseline_path: str = "the baseline") -> None:
    """Raise :class:`BaselineMismatch` when the profile differs or a dataset both hold has another hash."""
    problems = []
    profiles = results.profiles
    if profiles != [doc["profile"]]:
        problems.append(f"profile: the baseline was made with {doc['profile']!r}, the results with "
                        f"{', '.join(repr(p) for p in profiles) or 'none'}")
    for name, base_hash in sorted(doc["datasets"].items()):
        cur_hash = results.datasets.get(name)
        if base_hash and cur_hash and base_hash != cur_hash:
            problems.append(f"dataset {name!r}: baseline hash {base_hash[:12]}, results hash {cur_hash[:12]} "
                            "(the data differ)")
    if problems:
        refresh = REFRESH_COMMANDS.format(profile=profiles[0] if len(profiles) == 1 else doc["profile"],
                                          path=baseline_path)
        raise BaselineMismatch(
            f"baseline {baseline_path} does not match the results in {results.source}:\n  - "
            + "\n  - ".join(problems)
            + "\nNumbers made from other data or another profile are not comparable, so nothing was compared.\n"
              "If the change is deliberate, refresh the baseline:\n  " + refresh
            + "\nand commit it with a message that says why the numbers moved. Otherwise compare results made "
              f"with the baseline's profile ({doc['profile']}) and data.")


def _provenance_notes(doc: dict, results: ResultsSet) -> list:
    notes = list(results.notes)
    for name, base_hash in sorted(doc["datasets"].items()):
        if name in results.datasets and not base_hash:
            notes.append(f"dataset {name!r}: the baseline has no hash (saved from a CSV), so its data were not checked")
    for k in ("harness", "torch"):
        b, c = doc.get("versions", {}).get(k), results.versions.get(k)
        if b and c and b != c:
            notes.append(f"{k} version differs: baseline {b}, results {c}")
    for model, info in sorted(doc.get("models", {}).items()):
        if "hparams_hash" in info and model in results.hparams:
            now = hparams_hash(results.hparams[model])
            if now != info["hparams_hash"]:
                notes.append(f"hyperparameters of {model} changed since the baseline ({info['hparams_hash']} -> {now})")
    if doc.get("seeds") and results.seeds and doc["seeds"] != results.seeds:
        notes.append(f"seeds differ: baseline {_seed_text(doc['seeds'])}, results {_seed_text(results.seeds)}")
    return notes


def _seed_text(seeds) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}"
    return ",".join(map(str, seeds))


def _failure_reasons(rows: pd.DataFrame) -> str:
    """'failed: <reason> (seeds 0, 2); <other reason> (seed 1)': each distinct reason once."""
    seeds_by_reason: dict = {}
    for seed, reason in rows[["seed", "reason"]].itertuples(index=False):
        seeds = seeds_by_reason.setdefault(str(reason) if isinstance(reason, str) and reason else "failed", [])
        if pd.notna(seed) and int(seed) not in seeds:
            seeds.append(int(seed))
    parts = []
    for reason, seeds in seeds_by_reason.items():
        label = f" (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})" if seeds else ""
        parts.append(reason + label)
    return "failed: " + "; ".join(parts)


def compare(doc: dict, results: ResultsSet, alpha: float = DEFAULT_ALPHA, allow_missing: bool = False,
            tolerances: Optional[dict] = None, baseline_path: str = "the baseline") -> Comparison:
    """Compare ``results`` with the baseline document ``doc`` row by row (see the module doc)."""
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be between 0 and 1, not {alpha}")
    check_match(doc, results, baseline_path)
    base = {e.key: e for e in baseline_entries(doc)}
    current = {e.key: e for e in summarise(results)}
    df = results.rows
    failed = df[df["status"] == "failed"]
    skipped = df[df["status"] == "skipped"]
    rows, explained = [], set()

    for key, b in base.items():
        model, dataset, ident = key
        pair_failed = failed[(failed["model"] == model) & (failed["dataset"] == dataset)]
        job_level = pair_failed[pair_failed["metric"].isna()]
        metric_level = pair_failed[pair_failed["metric"].isin({b.metric, b.id})]
        c = current.get(key)
        if not pair_failed.empty and (not job_level.empty or not metric_level.empty or c is None):
            reasons = job_level if not job_level.empty else metric_level if not metric_level.empty else pair_failed
            explained.update(reasons.index)
            rows.append(Row("failed", model, dataset, ident, b.unit, b, c, note=_failure_reasons(reasons)))
            continue
        if c is None:
            pair_skipped = skipped[(skipped["model"] == model) & (skipped["dataset"] == dataset)
                                   & (skipped["metric"].isna() | skipped["metric"].isin({b.metric, b.id}))]
            note = "not in the results"
            if not pair_skipped.empty:
                note = "skipped: " + "; ".join(sorted(set(pair_skipped["reason"].fillna(""))))
            rows.append(Row("missing", model, dataset, ident, b.unit, b, None, note=note))
            continue
        changed = [f"{what} {getattr(b, attr)!s} -> {getattr(c, attr)!s}"
                   for what, attr in (("unit", "unit"), ("estimator", "estimator"), ("direction", "higher_is_better"))
                   if getattr(c, attr) is not None and getattr(b, attr) != getattr(c, attr)]
        if changed:
            rows.append(Row("changed", model, dataset, ident, b.unit, b, c,
                            note="; ".join(changed) + ": not comparable, refresh the baseline"))
            continue
        tol = tolerance_for(b, results.outputs, doc.get("outputs", {}), tolerances)
        decision = decide(b.stats, c.stats, bool(b.higher_is_better), tol, alpha)
        rows.append(Row(decision.verdict, model, dataset, ident, b.unit, b, c, decision, tol))

    for key, c in current.items():
        if key not in base:
            rows.append(Row("new", *key, c.unit, None, c, note="not in the baseline"))
    leftover = failed.drop(index=[i for i in failed.index if i in explained])
    for (model, dataset), g in leftover.groupby(["model", "dataset"], sort=True):
        metrics = sorted({m for m in g["metric"].dropna()}) or ["-"]
        for metric in metrics:
            sub = g[g["metric"] == metric] if metric != "-" else g
            rows.append(Row("failed", model, dataset, metric, note=_failure_reasons(sub) + " (no baseline row)"))

    rows.sort(key=lambda r: (VERDICT_ORDER.index(r.verdict), r.dataset, r.model, r.id))
    return Comparison(rows, alpha, allow_missing, _provenance_notes(doc, results), doc, results)


