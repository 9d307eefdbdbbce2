"""``compare``: set a results set against a baseline, row by row.

Each (model, dataset, metric identity) of the baseline is decided by :func:`harness.regression.rule.decide`
with the tolerance its metric declares. Rows only in the results are *new*; rows only in the baseline
are *missing* (they fail the gate unless ``allow_missing``), or *not-installed* when the plugin that
registered their model, dataset or metric is not installed now (they fail only with
``require_all_plugins``); a failed job or metric in the results is *failed* and always fails the gate;
a row whose unit, estimator or direction changed is *changed* (not comparable) and fails the gate
until the baseline is refreshed. Speed rows follow the machine rule of
:mod:`harness.regression.speed`: compared as measured on the same machine, normalised by the two
runs' calibrations on another, or *not-compared* (never failing). A baseline made with another
profile, or with a different hash for a dataset both contain, raises
:class:`~harness.regression.baseline.BaselineMismatch` (the CLI exits 2) and nothing is compared.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import SPEED, SPEED_TOLERANCE, Output, Tolerance, UserError
from harness.regression.baseline import (REFRESH_COMMANDS, BaselineMismatch, baseline_entries, hparams_hash,
                                         section_entries)
from harness.regression.results import Entry, ResultsSet, summarise
from harness.regression.rule import DEFAULT_ALPHA, Decision, decide
from harness.regression.speed import MACHINE_SPREAD, SAME_MACHINE, SpeedPlan, is_speed, plan_speed

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
NOT_INSTALLED, NOT_COMPARED = "not-installed", "not-compared"
VERDICT_ORDER = ("failed", "worse", "changed", "missing", NOT_INSTALLED, "better", "new", "unchanged", NOT_COMPARED)

# The state of each installed plugin, for telling rows of a plugin that is not installed from rows that
# went missing: "" loaded, DISABLED blocked by HARNESS_DISABLE_PLUGINS, else why it failed to load.
DISABLED = "disabled"


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
    speed: bool = False
    normalised: Optional[Entry] = None  # the current entry as it would read on the baseline's machine

    def as_dict(self) -> dict:
        d = {"verdict": self.verdict, "model": self.model, "dataset": self.dataset, "metric": self.id,
             "unit": self.unit, "kind": "speed" if self.speed else "quality", "note": self.note}
        for side in ("baseline", "current", "normalised"):
            e = getattr(self, side)
            if e is None and side == "normalised":
                continue
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
    speed: Optional[SpeedPlan] = None
    require_all_plugins: bool = False

    @property
    def counts(self) -> dict:
        counts = {v: 0 for v in VERDICT_ORDER}
        for r in self.rows:
            counts[r.verdict] += 1
        return counts

    @property
    def failures(self) -> list:
        failing = set(FAILING) - ({"missing"} if self.allow_missing else set())
        if self.require_all_plugins:
            failing.add(NOT_INSTALLED)
        return [r for r in self.rows if r.verdict in failing]

    @property
    def not_installed(self) -> dict:
        """note -> rows, for the baseline rows of plugins that are not installed."""
        out: dict = {}
        for r in self.rows:
            if r.verdict == NOT_INSTALLED:
                out.setdefault(r.note, []).append(r)
        return out

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_dict(self) -> dict:
        return {"passed": not self.failures, "exit_code": self.exit_code, "alpha": self.alpha,
                "allow_missing": self.allow_missing, "require_all_plugins": self.require_all_plugins,
                "counts": self.counts, "notes": self.notes, "speed": _speed_dict(self.speed),
                "baseline": {k: self.baseline.get(k) for k in ("source", "created", "profile", "seeds", "versions")},
                "results": {"source": self.results.source, "profiles": self.results.profiles,
                            "seeds": self.results.seeds, "versions": self.results.versions},
                "rows": [r.as_dict() for r in self.rows]}

    def to_markdown(self, baseline_path: str = "", all_rows: bool = False) -> str:
        from harness.regression.render import render_markdown

        return render_markdown(self, baseline_path, all_rows)


def _speed_dict(plan: Optional[SpeedPlan]) -> Optional[dict]:
    if plan is None:
        return None
    return {"mode": plan.mode, "summary": plan.describe(), "results_machine": plan.results.id,
            "results_machines": plan.results.ids, "baseline_machine": plan.section_id,
            "baseline_machines": plan.sections, "same_machine": plan.mode == SAME_MACHINE,
            "baseline_from_this_machine": plan.baseline_from_this_machine,
            "factor": plan.factor.factor if plan.factor else None,
            "factor_by_workload": plan.factor.ratios if plan.factor else None, "spread": plan.spread}


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


def _judge(doc, base: dict, current: dict, results: ResultsSet, failed, skipped, explained: set, alpha: float,
           tolerances, plugins, plan: Optional[SpeedPlan]) -> list:
    """Rows for the baseline entries ``base`` against the results' entries ``current`` (one kind)."""
    rows = []
    for key, b in base.items():
        model, dataset, ident = key
        speed = plan is not None
        pair_failed = failed[(failed["model"] == model) & (failed["dataset"] == dataset)]
        job_level = pair_failed[pair_failed["metric"].isna()]
        metric_level = pair_failed[pair_failed["metric"].isin({b.metric, b.id})]
        c = current.get(key)
        if not pair_failed.empty and (not job_level.empty or not metric_level.empty or c is None):
            reasons = job_level if not job_level.empty else metric_level if not metric_level.empty else pair_failed
            explained.update(reasons.index)
            rows.append(Row("failed", model, dataset, ident, b.unit, b, c, note=_failure_reasons(reasons), speed=speed))
            continue
        if c is None:
            absent, broken = _uninstalled(doc, model, dataset, b.metric, plugins)
            if absent:
                rows.append(Row(NOT_INSTALLED, model, dataset, ident, b.unit, b, None, note=absent, speed=speed))
                continue
            pair_skipped = skipped[(skipped["model"] == model) & (skipped["dataset"] == dataset)
                                   & (skipped["metric"].isna() | skipped["metric"].isin({b.metric, b.id}))]
            note = broken or "not in the results"
            if not pair_skipped.empty:
                note = "skipped: " + "; ".join(sorted(set(pair_skipped["reason"].fillna(""))))
            rows.append(Row("missing", model, dataset, ident, b.unit, b, None, note=note, speed=speed))
            continue
        changed = [f"{what} {getattr(b, attr)!s} -> {getattr(c, attr)!s}"
                   for what, attr in (("unit", "unit"), ("estimator", "estimator"), ("direction", "higher_is_better"))
                   if getattr(c, attr) is not None and getattr(b, attr) != getattr(c, attr)]
        if changed:
            rows.append(Row("changed", model, dataset, ident, b.unit, b, c,
                            note="; ".join(changed) + ": not comparable, refresh the baseline", speed=speed))
            continue
        tol = tolerance_for(b, results.outputs, doc.get("outputs", {}), tolerances)
        judged, note = c, ""
        if plan is not None:
            judged, note = plan.normalise(c, unit=b.unit), plan.row_note(b.unit)
            decision = plan.judge(b.stats, c, b.unit, bool(b.higher_is_better), tol, alpha)
            tol = plan.tolerance(tol, b.unit)
        else:
            decision = decide(b.stats, judged.stats, bool(b.higher_is_better), tol, alpha)
        rows.append(Row(decision.verdict, model, dataset, ident, b.unit, b, c, decision, tol, note, speed,
                        judged if judged is not c else None))
    for key, c in current.items():
        if key not in base:
            rows.append(Row("new", *key, c.unit, None, c, note="not in the baseline", speed=plan is not None))
    return rows


def compare(doc: dict, results: ResultsSet, alpha: float = DEFAULT_ALPHA, allow_missing: bool = False,
            tolerances: Optional[dict] = None, baseline_path: str = "the baseline", quality_only: bool = False,
            plugins: Optional[Mapping] = None, require_all_plugins: bool = False,
            machine_spread: float = MACHINE_SPREAD) -> Comparison:
    """Compare ``results`` with the baseline document ``doc`` row by row (see the module doc).

    ``plugins``: installed plugin name -> "" (loaded), ``DISABLED`` or why it failed to load; None counts
    every plugin as installed. ``quality_only``: speed rows are not judged. ``machine_spread``: how much
    wider a time-dependent speed row's floor is when compared across machines."""
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be between 0 and 1, not {alpha}")
    check_match(doc, results, baseline_path)
    plan = plan_speed(doc, results, quality_only, machine_spread)
    entries = summarise(results)
    quality = {e.key: e for e in entries if not is_speed(e)}
    speed = {e.key: e for e in entries if is_speed(e)}
    df = results.rows
    failed = df[df["status"] == "failed"]
    skipped = df[df["status"] == "skipped"]
    explained: set = set()
    base = {e.key: e for e in baseline_entries(doc)}
    rows = _judge(doc, base, quality, results, failed, skipped, explained, alpha, tolerances, plugins, None)
    if plan.compared:
        base_speed = {e.key: e for e in section_entries(doc, plan.section_id)}
        rows += _judge(doc, base_speed, speed, results, failed, skipped, explained, alpha, tolerances, plugins, plan)
    else:
        rows += [Row(NOT_COMPARED, *key, c.unit, None, c, note="speed not compared", speed=True) for key, c in speed.items()]

    leftover = failed.drop(index=[i for i in failed.index if i in explained])
    for (model, dataset), g in leftover.groupby(["model", "dataset"], sort=True):
        metrics = sorted({m for m in g["metric"].dropna()}) or ["-"]
        for metric in metrics:
            sub = g[g["metric"] == metric] if metric != "-" else g
            rows.append(Row("failed", model, dataset, metric, note=_failure_reasons(sub) + " (no baseline row)"))

    rows.sort(key=lambda r: (VERDICT_ORDER.index(r.verdict), r.dataset, r.model, r.id))
    return Comparison(rows, alpha, allow_missing, _provenance_notes(doc, results), doc, results, plan,
                      require_all_plugins)
