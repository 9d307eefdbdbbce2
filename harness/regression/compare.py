"""``compare``: set a results set against a baseline, row by row.

The baseline is the reference side and the results the current side of the comparison engine
(:func:`harness.comparison.compare_sides`): each (model, dataset, metric identity) is matched, checked
and decided with the tolerance its metric declares, speed rows under the machine rule (as measured on
the same machine, normalised by the two runs' calibrations on another; :mod:`harness.regression.speed`
picks the baseline's section). The gate adds what only a baseline has: rows only in the baseline are
*missing* (they fail the gate unless ``allow_missing``), or *not-installed* when the plugin that
registered their model, dataset or metric is not installed now (they fail only with
``require_all_plugins``); a failed job or metric in the results is *failed* and always fails the gate;
a row whose unit, estimator, direction, declaration or protocol changed is *changed* (not comparable)
and fails the gate until the baseline is refreshed; rows only in the results are *new*. A baseline made
from a results directory (``compare --baseline DIR``) gives the per-example values of its jobs, and
rows both sides kept them for are judged paired; a baseline file is always compared unpaired. When no section of the baseline can be
set against the results (or ``quality_only``), the results' speed rows are listed *not-compared* and
never fail. A baseline made with another profile, or with a different hash for a dataset both contain,
raises :class:`~harness.regression.baseline.BaselineMismatch` (the CLI exits 2) and nothing is compared.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import pandas as pd

from harness.comparison import (DEFAULT_ALPHA, MACHINE_SPREAD, ResultsSet, RowComparison, Side, SpeedPlan, Verdict,
                                compare_sides, declaration, is_speed, summarise)
from harness.contracts import QUALITY, SPEED, UserError
from harness.jobs import JobStatus
from harness.regression.baseline import (baseline_entries, baseline_outputs, check_match, hparams_hash,
                                         section_entries)
from harness.regression.speed import plan_for, speed_dict

FAILING = (Verdict.FAILED, Verdict.WORSE, Verdict.CHANGED, Verdict.MISSING)
VERDICT_ORDER = (Verdict.FAILED, Verdict.WORSE, Verdict.CHANGED, Verdict.MISSING, Verdict.NOT_INSTALLED,
                 Verdict.BETTER, Verdict.NEW, Verdict.UNCHANGED, Verdict.NOT_COMPARED)

# The state of each installed plugin, for telling rows of a plugin that is not installed from rows that
# went missing: "" loaded, DISABLED blocked by HARNESS_DISABLE_PLUGINS, else why it failed to load.
DISABLED = "disabled"


def row_dict(row: RowComparison) -> dict:
    """One row of ``compare --format json``."""
    d = {"verdict": row.verdict, "model": row.model, "dataset": row.dataset, "metric": row.id, "unit": row.unit,
         "kind": SPEED if row.speed else QUALITY, "note": row.note, "paired": row.paired}
    for name, e in (("baseline", row.reference), ("current", row.current), ("normalised", row.normalised)):
        if e is None and name == "normalised":
            continue
        d[name] = None if e is None else {"mean": e.mean, "stderr": e.stderr, "n_seeds": e.n_seeds,
                                          "estimator": e.estimator, "protocol": e.protocol}
    if row.decision is not None:
        d["delta"], d["ratio"] = _finite(row.decision.delta), _finite(row.decision.ratio)
        d["p_worse"], d["p_better"], d["test"] = row.decision.p_worse, row.decision.p_better, row.decision.test
    if row.tolerance is not None:
        d["tolerance"] = asdict(row.tolerance)
    if row.paired_difference is not None:
        d["paired_difference"] = row.paired_difference.as_dict()
    return d


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


@dataclass
class Comparison:
    rows: list  # [RowComparison]
    alpha: float
    allow_missing: bool
    notes: list
    baseline: dict
    results: ResultsSet
    speed: Optional[SpeedPlan] = None  # or a MachinePlans (rows measured on several machines)
    require_all_plugins: bool = False

    @property
    def counts(self) -> dict:
        counts = {v: 0 for v in VERDICT_ORDER}
        for r in self.rows:
            counts[r.verdict] += 1
        return counts

    @property
    def failures(self) -> list:
        failing = set(FAILING) - ({Verdict.MISSING} if self.allow_missing else set())
        if self.require_all_plugins:
            failing.add(Verdict.NOT_INSTALLED)
        return [r for r in self.rows if r.verdict in failing]

    @property
    def not_installed(self) -> dict:
        """note -> rows, for the baseline rows of plugins that are not installed."""
        out: dict = {}
        for r in self.rows:
            if r.verdict == Verdict.NOT_INSTALLED:
                out.setdefault(r.note, []).append(r)
        return out

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    @property
    def paired(self) -> list:
        """The rows judged paired (per-example values of both sides on the same test examples)."""
        return [r for r in self.rows if r.paired]

    def to_dict(self) -> dict:
        return {"passed": not self.failures, "exit_code": self.exit_code, "alpha": self.alpha,
                "allow_missing": self.allow_missing, "require_all_plugins": self.require_all_plugins,
                "counts": self.counts, "paired_rows": len(self.paired), "notes": self.notes, "speed": speed_dict(self.speed, self.baseline),
                "baseline": {k: self.baseline.get(k) for k in ("source", "created", "profile", "seeds", "versions")},
                "results": {"source": self.results.source, "profiles": self.results.profiles,
                            "seeds": self.results.seeds, "versions": self.results.versions},
                "rows": [row_dict(r) for r in self.rows]}

    def to_markdown(self, baseline_path: str = "", all_rows: bool = False) -> str:
        from harness.regression.render import render_markdown

        return render_markdown(self, baseline_path, all_rows)


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
        notes.append(f"seeds differ: baseline {seed_text(doc['seeds'])}, results {seed_text(results.seeds)}")
    return notes


def seed_text(seeds) -> str:
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


def _uninstalled(doc: dict, model: str, dataset: str, output: str, plugins: Optional[Mapping]) -> tuple:
    """(why the row's plugin is not installed, or "", why it failed to load, or "") from the owners the
    baseline recorded and the state of the installed plugins (None: every plugin counts as installed)."""
    if plugins is None:
        return "", ""
    owners = doc.get("owners") or {}
    broken = ""
    for kind, name in (("models", model), ("datasets", dataset), ("outputs", output)):
        plugin = (owners.get(kind) or {}).get(name)
        if not plugin:
            continue
        what = {"models": "model", "datasets": "dataset", "outputs": "metric"}[kind]
        if plugin not in plugins:
            return f"plugin not installed: {plugin} (registers {what} {name})", ""
        if plugins[plugin] == DISABLED:
            return f"plugin disabled (HARNESS_DISABLE_PLUGINS): {plugin} (registers {what} {name})", ""
        if plugins[plugin]:
            broken = broken or f"plugin {plugin} failed to load: {plugins[plugin]}"
    return "", broken


class _Gate:
    """What the gate adds to the engine's rows: failures, missing and not-installed rows, new rows."""

    def __init__(self, doc: dict, results: ResultsSet, plugins: Optional[Mapping]):
        self.doc, self.plugins = doc, plugins
        df = results.rows
        self.failed = df[df["status"] == JobStatus.FAILED]
        self.skipped = df[df["status"] == JobStatus.SKIPPED]
        self.explained: set = set()  # failed rows a baseline row accounts for

    def row(self, row: RowComparison) -> RowComparison:
        b = row.reference
        if b is None:
            row.note = "not in the baseline"
            return row
        failed = self.failed[(self.failed["model"] == row.model) & (self.failed["dataset"] == row.dataset)]
        job_level = failed[failed["metric"].isna()]
        metric_level = failed[failed["metric"].isin({b.metric, b.id})]
        if not failed.empty and (not job_level.empty or not metric_level.empty or row.current is None):
            reasons = job_level if not job_level.empty else metric_level if not metric_level.empty else failed
            self.explained.update(reasons.index)
            return RowComparison(Verdict.FAILED, row.model, row.dataset, row.id, row.unit, b, row.current,
                                 note=_failure_reasons(reasons), speed=row.speed)
        if row.verdict == Verdict.MISSING:
            absent, broken = _uninstalled(self.doc, row.model, row.dataset, b.metric, self.plugins)
            if absent:
                row.verdict, row.note = Verdict.NOT_INSTALLED, absent
                return row
            skipped = self.skipped[(self.skipped["model"] == row.model) & (self.skipped["dataset"] == row.dataset)
                                   & (self.skipped["metric"].isna() | self.skipped["metric"].isin({b.metric, b.id}))]
            row.note = broken or "not in the results"
            if not skipped.empty:
                row.note = "skipped: " + "; ".join(sorted(set(skipped["reason"].fillna(""))))
        elif row.verdict == Verdict.CHANGED:
            row.note += ": not comparable, refresh the baseline"
        return row

    def unexplained(self, outputs: Mapping) -> list:
        """A failed row for every failure no baseline row accounts for."""
        rows = []
        leftover = self.failed.drop(index=[i for i in self.failed.index if i in self.explained])
        for (model, dataset), g in leftover.groupby(["model", "dataset"], sort=True):
            for metric in sorted({m for m in g["metric"].dropna()}) or ["-"]:
                sub = g[g["metric"] == metric] if metric != "-" else g
                rows.append(RowComparison(Verdict.FAILED, model, dataset, metric,
                                          note=_failure_reasons(sub) + " (no baseline row)",
                                          speed=is_speed(outputs.get(metric))))
        return rows


def _protocol_notes(rows: list) -> list:
    """What the summary says about protocols and pairing: rows compared without a recorded protocol, rows
    judged paired."""
    notes = []
    unrecorded = [r for r in rows if "protocol not recorded" in r.note]
    if unrecorded:
        notes.append(f"{len(unrecorded)} row(s) were compared without a recorded protocol on one side (results or "
                     "a baseline made before protocols were stored): a change of evaluation settings would not show; "
                     "refresh the baseline to record them")
    paired = [r for r in rows if r.paired]
    if paired:
        names = sorted({r.id for r in paired})
        notes.append(f"{len(paired)} row(s) judged paired, on per-example values of the same test examples "
                     f"({', '.join(names)}); the others from the summaries")
    return notes


def compare(doc: dict, results: ResultsSet, alpha: float = DEFAULT_ALPHA, allow_missing: bool = False,
            tolerances: Optional[dict] = None, baseline_path: str = "the baseline", quality_only: bool = False,
            plugins: Optional[Mapping] = None, require_all_plugins: bool = False,
            machine_spread: float = MACHINE_SPREAD, reference_results: Optional[ResultsSet] = None) -> Comparison:
    """Compare ``results`` with the baseline document ``doc`` row by row (see the module doc).

    ``plugins``: installed plugin name -> "" (loaded), ``DISABLED`` or why it failed to load; None counts
    every plugin as installed. ``quality_only``: speed rows are not judged. ``machine_spread``: how much
    wider the floor of a rate or duration is when compared across machines. ``reference_results``: the
    results set ``doc`` was made from (``compare --baseline DIR``), whose per-example values pair."""
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be between 0 and 1, not {alpha}")
    check_match(doc, results, baseline_path)
    plan = plan_for(doc, results, quality_only, machine_spread)
    reference = Side({e.key: e for e in baseline_entries(doc)}, baseline_outputs(doc, results.outputs),
                     name="the baseline", per_example=_pairing(reference_results))
    for section in plan.reference_ids:  # each row's figures from the section its machine's plan chose
        reference.entries.update({e.key: e for e in section_entries(doc, section)
                                  if plan.for_row(e.key).reference_id == section})
    current = Side({e.key: e for e in summarise(results)}, results.outputs, name="the results",
                   per_example=results.per_example)
    unjudged = {key: e for key, e in current.entries.items()
                if not plan.for_row(key).compared and is_speed(declaration(e.metric, current, reference))}
    current.entries = {key: e for key, e in current.entries.items() if key not in unjudged}
    gate = _Gate(doc, results, plugins)
    rows = [gate.row(row) for row in compare_sides(reference, current, plan, alpha, tolerances)]
    rows += [RowComparison(Verdict.NOT_COMPARED, *key, e.unit, None, e, note="speed not compared", speed=True)
             for key, e in unjudged.items()]
    rows += gate.unexplained({**reference.outputs, **current.outputs})
    rows.sort(key=lambda r: (VERDICT_ORDER.index(r.verdict), r.dataset, r.model, r.id))
    return Comparison(rows, alpha, allow_missing, _provenance_notes(doc, results) + _protocol_notes(rows), doc,
                      results, plan, require_all_plugins)


def _pairing(results: Optional[ResultsSet]):
    """A baseline entry's per-example values, looked up in the results set the baseline was made from
    (None: a baseline file, which keeps none)."""
    if results is None:
        return None
    made_from = {e.key: e for e in summarise(results)}

    def per_example(entry):
        found = made_from.get(entry.key)
        return None if found is None else results.per_example(found)

    return per_example
