"""The regression gate: summarise a results set into a baseline, and compare a results set with one.

A **baseline** is a JSON file holding, per (model, dataset, metric identity), the mean over seeds,
its standard error (across seeds when there are several; the measurement's own standard error when
there is one), the number of seeds, unit, direction and estimator; it is stamped with the
provenance that must match for numbers to be comparable (dataset hashes, profile) and with what
is only informative (harness/torch versions, date, a hash of each model's hyperparameters).

**compare** sets results against a baseline. A row is *worse* only when both hold:

1. it moved in the worse direction by more than its **tolerance floor** (:func:`tolerance_for`):
   ``max(absolute, relative * |baseline|)`` for quality metrics; for speed metrics (timings,
   throughputs, memory) a ratio: worse by more than a factor ``1 / (1 - relative)`` (2x by
   default: half the throughput, or twice the latency);
2. the seeds' spread does not explain it: a one-sided **Welch t-test** from the summary statistics
   (``scipy.stats.ttest_ind_from_stats``, ``equal_var=False``) gives p < alpha. When either side has
   a single seed a one-sided **z-test** uses the standard errors; when a standard error is unknown
   the floor alone decides; when both sides have zero spread (a deterministic model) any change
   beyond the floor counts.

*better* is the mirror image. Rows only in the results are *new*; rows only in the baseline are
*missing* (they fail the gate unless ``allow_missing``); a failed job or metric in the results is
*failed* and always fails the gate; a row whose unit, estimator or direction changed is *changed*
(not comparable) and fails the gate until the baseline is refreshed. A baseline made with another
profile, or with a different hash for a dataset both contain, raises :class:`BaselineMismatch`
(the CLI exits 2) and nothing is compared.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.contracts import UserError
from harness.store import STORE_NAME
from harness.report import metric_identity

BASELINE_FORMAT = "harness-baseline/1"
DEFAULT_ALPHA = 0.01

REFRESH_COMMANDS = ("python -m harness run --all --profile {profile} --seeds 3 --out DIR && "
                    "python -m harness baseline save DIR --to {path}")


class BaselineMismatch(UserError):
    """The baseline was made from other data or another profile: its numbers are not comparable."""


# ----------------------------------------------------------------------------- tolerances

@dataclass(frozen=True)
class Tolerance:
    """How far a row may move the wrong way before the floor is passed.

    Difference metrics: ``|current - baseline| > max(absolute, relative * |baseline|)``.
    Ratio metrics (``ratio=True``, speed): the worse-way ratio exceeds ``1 / (1 - relative)``.
    """

    relative: float = 0.0
    absolute: float = 0.0
    ratio: bool = False

    def floor(self, baseline: float) -> float:
        """The allowed absolute change for a difference metric."""
        return max(self.absolute, self.relative * abs(baseline))

    @property
    def factor(self) -> float:
        """The allowed worse-way ratio for a ratio metric (2.0 for relative 0.5)."""
        return 1.0 / (1.0 - self.relative) if self.relative < 1 else math.inf

    def describe(self) -> str:
        if self.ratio:
            return f"x{self.factor:g}"
        parts = []
        if self.relative:
            parts.append(f"{100 * self.relative:g}%")
        if self.absolute:
            parts.append(f"{self.absolute:g}")
        return " or ".join(parts) if parts else "0"


# Per metric name (the part before "@" for identities such as fid@500). Likelihoods in nats: seed
# noise of the smoke models is a few hundredths of a nat; 2% or 0.05 nats is well above it and well
# below a real regression (a wrong variance, a broken layer). bpd is nll / (D ln 2): same relative
# floor. nll_gap = nll - entropy sits near zero, so only an absolute floor makes sense. Sample
# statistics from 500 samples (smoke) are noisy: FID 10%, KID 25%, precision/recall 0.05.
METRIC_TOLERANCES = {
    "nll": Tolerance(relative=0.02, absolute=0.05),
    "elbo_nll": Tolerance(relative=0.02, absolute=0.05),
    "parzen_nll": Tolerance(relative=0.02, absolute=0.05),
    "nll_gap": Tolerance(absolute=0.05),
    "bpd": Tolerance(relative=0.02, absolute=0.005),
    "fid": Tolerance(relative=0.10, absolute=0.01),
    "kid": Tolerance(relative=0.25, absolute=0.001),
    "precision": Tolerance(absolute=0.05),
    "recall": Tolerance(absolute=0.05),
}
# Per unit, for metrics not named above.
UNIT_TOLERANCES = {
    "nats": Tolerance(relative=0.02, absolute=0.05),
    "bits/dim": Tolerance(relative=0.02, absolute=0.005),
}
# Speed: CI machines are shared and noisy, so only a halving of throughput (a doubling of time or
# memory) counts.
SPEED_TOLERANCE = Tolerance(relative=0.5, ratio=True)
# Anything else: 5% relative.
FALLBACK_TOLERANCE = Tolerance(relative=0.05)

SPEED_UNITS = {"samples/s", "examples/s", "evals/s", "steps/s", "flop/s", "ms", "s", "seconds", "bytes", "b",
               "kib", "mib", "gib", "kb", "mb", "gb", "flop", "flops", "flops/sample"}


def is_speed(unit: str, estimator: str) -> bool:
    unit = (unit or "").lower()
    return estimator == "measured" or unit in SPEED_UNITS or unit.endswith("/s")


def tolerance_for(metric: str, unit: str, estimator: str, overrides: Optional[dict] = None) -> Tolerance:
    """The tolerance floor of a row: ``overrides`` (by metric name), then speed, metric, unit defaults."""
    base = metric.split("@")[0]
    if overrides and (metric in overrides or base in overrides):
        return overrides.get(metric, overrides.get(base))
    if is_speed(unit, estimator):
        return SPEED_TOLERANCE
    if base in METRIC_TOLERANCES:
        return METRIC_TOLERANCES[base]
    return UNIT_TOLERANCES.get(unit, FALLBACK_TOLERANCE)


# Directions by convention, for results read from a CSV (which carries no higher_is_better column)
# when the metric is not a registered metric name.
_LOWER_IS_BETTER = {"nll", "bpd", "nll_gap", "elbo_nll", "parzen_nll", "fid", "kid"}
_HIGHER_IS_BETTER = {"precision", "recall", "accuracy", "density", "coverage"}
_LOWER_UNITS = {"ms", "s", "seconds", "bytes", "b", "kib", "mib", "gib", "kb", "mb", "gb", "flop", "flops",
                "flops/sample"}


def conventional_direction(metric: str, unit: str) -> Optional[bool]:
    """True if higher is better, False if lower is, None if neither the name nor the unit says."""
    base, unit = metric.split("@")[0], (unit or "").lower()
    if base in _LOWER_IS_BETTER:
        return False
    if base in _HIGHER_IS_BETTER or unit.endswith("/s"):
        return True
    if unit in _LOWER_UNITS or unit.startswith("flop/"):  # FLOP per sample or example (FLOP/s is above)
        return False
    return None


# ----------------------------------------------------------------------------- the decision

@dataclass(frozen=True)
class Stats:
    """One side of a comparison: mean over seeds, its standard error (NaN if unknown), seed count."""

    mean: float
    stderr: float
    n: int


@dataclass(frozen=True)
class Decision:
    verdict: str  # worse, better, unchanged
    delta: float  # current - baseline
    worse_by: float  # positive when current is worse (in the metric's direction)
    ratio: float  # current / baseline (NaN when the baseline is 0)
    beyond_floor: bool  # moved past the floor (either way)
    p_worse: Optional[float]  # one-sided p-value of "current is worse"; None: floor only
    p_better: Optional[float]
    test: str  # welch, z, no-spread, floor-only


def _tests(base: Stats, cur: Stats, higher_is_better: bool) -> tuple:
    """(p_worse, p_better, test name) for the hypothesis that the current mean is worse/better."""
    from scipy import stats

    worse_by = (base.mean - cur.mean) if higher_is_better else (cur.mean - base.mean)
    if not (math.isfinite(base.stderr) and math.isfinite(cur.stderr)):
        return None, None, "floor-only"
    if base.stderr == 0 and cur.stderr == 0:
        # No spread on either side (a deterministic model): nothing but the floor can excuse a change.
        return (0.0 if worse_by > 0 else 1.0), (0.0 if worse_by < 0 else 1.0), "no-spread"
    if base.n >= 2 and cur.n >= 2:
        sd_cur, sd_base = cur.stderr * math.sqrt(cur.n), base.stderr * math.sqrt(base.n)
        worse_alt, better_alt = ("less", "greater") if higher_is_better else ("greater", "less")
        p_worse = stats.ttest_ind_from_stats(cur.mean, sd_cur, cur.n, base.mean, sd_base, base.n,
                                             equal_var=False, alternative=worse_alt).pvalue
        p_better = stats.ttest_ind_from_stats(cur.mean, sd_cur, cur.n, base.mean, sd_base, base.n,
                                              equal_var=False, alternative=better_alt).pvalue
        return float(p_worse), float(p_better), "welch"
    z = worse_by / math.hypot(base.stderr, cur.stderr)
    return float(stats.norm.sf(z)), float(stats.norm.cdf(z)), "z"


def decide(base: Stats, cur: Stats, higher_is_better: bool, tolerance: Tolerance,
           alpha: float = DEFAULT_ALPHA) -> Decision:
    """Is ``cur`` worse than ``base``, better, or unchanged within floor and noise? (See module doc.)"""
    delta = cur.mean - base.mean
    worse_by = -delta if higher_is_better else delta
    ratio = cur.mean / base.mean if base.mean != 0 else math.nan
    if tolerance.ratio and base.mean > 0 and cur.mean >= 0:
        # Worse-way ratio: base/cur for higher-is-better (throughput), cur/base otherwise (time, memory).
        worse_ratio = (base.mean / cur.mean if cur.mean > 0 else math.inf) if higher_is_better else ratio
        past_worse = worse_ratio > tolerance.factor
        past_better = worse_ratio < 1 / tolerance.factor
    else:
        allowed = tolerance.floor(base.mean)
        past_worse, past_better = worse_by > allowed, -worse_by > allowed
    p_worse, p_better, test = _tests(base, cur, higher_is_better)
    if past_worse and (p_worse is None or p_worse < alpha):
        verdict = "worse"
    elif past_better and (p_better is None or p_better < alpha):
        verdict = "better"
    else:
        verdict = "unchanged"
    return Decision(verdict, delta, worse_by, ratio, past_worse or past_better, p_worse, p_better, test)


# ----------------------------------------------------------------------------- reading results

@dataclass
class ResultsSet:
    """Measurements of one results directory (or CSV), one row per job, seed and metric."""

    source: str
    rows: pd.DataFrame  # model family dataset seed profile metric id value stderr unit estimator
    #                     higher_is_better status reason run_id
    datasets: dict = field(default_factory=dict)  # dataset -> provenance hash (empty from a CSV)
    hparams: dict = field(default_factory=dict)  # model -> hyperparameters (empty from a CSV)
    versions: dict = field(default_factory=dict)  # harness, torch, python, platform, device
    notes: list = field(default_factory=list)

    @property
    def profiles(self) -> list:
        return sorted(p for p in self.rows["profile"].dropna().unique())

    @property
    def seeds(self) -> list:
        ok = self.rows[self.rows["status"] == "ok"]
        return sorted(int(s) for s in ok["seed"].dropna().unique())

    def profile(self) -> str:
        """The one profile these results were made with (a UserError if there are several)."""
        profiles = self.profiles
        if len(profiles) != 1:
            raise UserError(f"results in {self.source} hold {'no' if not profiles else len(profiles)} profiles "
                            f"({', '.join(profiles) or 'none'}); use one output directory per profile")
        return profiles[0]


def _latest_jobs(df: pd.DataFrame, order_column: str) -> pd.DataFrame:
    """Keep, for each (model, dataset, seed, profile), only the rows of the job that finished last.

    A directory reused by several runs may hold the same job made by different code; the newest wins.
    """
    if df.empty:
        return df
    keys = ["model", "dataset", "seed", "profile"]
    latest = df.groupby(keys, dropna=False)[order_column].transform("max")
    return df[df[order_column] == latest]


def _read_store(directory: Path) -> ResultsSet:
    db = sqlite3.connect((directory / STORE_NAME).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        df = pd.read_sql_query("""
            SELECT j.key, j.run_id, j.model, j.family, j.dataset, j.seed, j.profile, j.finished,
                   j.hparams, j.dataset_provenance,
                   m.metric, m.value, m.stderr, m.unit, m.estimator, m.n, m.higher_is_better, m.details,
                   COALESCE(m.status, j.status) AS status, COALESCE(m.reason, j.reason) AS reason
            FROM jobs j LEFT JOIN measurements m ON m.key = j.key
            ORDER BY j.dataset, j.model, j.seed, m.rowid
        """, db)
        runs = pd.read_sql_query("SELECT run_id, started, info FROM runs ORDER BY started", db)
    except pd.errors.DatabaseError as exc:
        raise UserError(f"{directory / STORE_NAME} is not a harness results store: {exc}") from None
    finally:
        db.close()
    df = _latest_jobs(df, "finished")
    df = df.assign(id=[metric_identity(d, m) if isinstance(m, str) else None for d, m in zip(df["details"], df["metric"])])
    df["higher_is_better"] = [None if pd.isna(v) else bool(v) for v in df["higher_is_better"]]

    datasets: dict = {}
    for name, prov in df[df["dataset_provenance"].fillna("") != ""][["dataset", "dataset_provenance"]] \
            .drop_duplicates().itertuples(index=False):
        datasets.setdefault(name, set()).add(prov)
    conflicting = {d: sorted(h) for d, h in datasets.items() if len(h) > 1}
    if conflicting:
        raise UserError(f"results in {directory} hold several versions of dataset(s) "
                        f"{', '.join(sorted(conflicting))}; use a fresh output directory")
    hparams: dict = {}
    for model, text in df[["model", "hparams"]].drop_duplicates().itertuples(index=False):
        hparams.setdefault(model, []).append(json.loads(text or "{}"))
    used_runs = set(df["run_id"])
    versions: dict = {}
    for run_id, _, info in runs.itertuples(index=False):
        if run_id in used_runs:
            info = json.loads(info or "{}")
            for k in ("harness", "torch", "python", "platform", "device"):
                if k in info:
                    versions.setdefault(k, [])
                    if str(info[k]) not in versions[k]:
                        versions[k].append(str(info[k]))
    return ResultsSet(
        source=str(directory), rows=df.reset_index(drop=True),
        datasets={d: next(iter(h)) for d, h in datasets.items()},
        hparams={m: (h[0] if len(h) == 1 else h) for m, h in hparams.items()},
        versions={k: ", ".join(v) for k, v in versions.items()},
    )


def _read_csv(path: Path, directions: Optional[dict]) -> ResultsSet:
    df = pd.read_csv(path)
    missing = {"model", "dataset", "seed", "profile", "metric", "value", "status"} - set(df.columns)
    if missing:
        raise UserError(f"{path} is not a harness results.csv (no column(s) {', '.join(sorted(missing))})")
    for col in ("family", "stderr", "unit", "estimator", "reason", "run_id"):
        if col not in df.columns:
            df[col] = None
    df["unit"] = df["unit"].fillna("")
    df["run_id"] = df["run_id"].fillna("").astype(str)
    df = _latest_jobs(df, "run_id")
    df["id"] = df["metric"]
    directions = directions or {}
    df["higher_is_better"] = [
        directions.get(m, conventional_direction(m, u)) if isinstance(m, str) else None
        for m, u in zip(df["metric"], df["unit"])
    ]
    notes = [f"{path} is a CSV: it carries no dataset hashes, hyperparameters or metric identities "
             "(details['id']); save and compare the results directory to check those."]
    return ResultsSet(source=str(path), rows=df.reset_index(drop=True), notes=notes)


def load_results(path, directions: Optional[dict] = None) -> ResultsSet:
    """Read a results directory (its results.sqlite) or a results.csv.

    A CSV next to a results.sqlite is read through the store, which keeps provenance. ``directions``
    maps metric names to higher_is_better for CSV rows (the CLI passes the registered metrics).
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".csv" and (path.parent / STORE_NAME).exists():
        path = path.parent
    if path.is_dir():
        if not (path / STORE_NAME).exists():
            if (path / "results.csv").exists():
                return _read_csv(path / "results.csv", directions)
            raise UserError(f"no results in {path} (expected {path / STORE_NAME}); "
                            f"run `python -m harness run --out {path}` first")
        return _read_store(path)
    if path.is_file() and path.suffix == ".csv":
        return _read_csv(path, directions)
    raise UserError(f"{path} is neither a results directory nor a results.csv")


# ----------------------------------------------------------------------------- summaries and baselines

@dataclass
class Entry:
    """The summary of one (model, dataset, metric identity) across seeds."""

    model: str
    dataset: str
    id: str
    metric: str
    family: str
    unit: str
    estimator: str
    higher_is_better: Optional[bool]
    mean: float
    stderr: Optional[float]  # None when unknown
    n_seeds: int
    seeds: list

    @property
    def key(self) -> tuple:
        return (self.model, self.dataset, self.id)

    @property
    def stats(self) -> Stats:
        return Stats(self.mean, math.nan if self.stderr is None else self.stderr, self.n_seeds)


def _first(values, default=""):
    for v in values:
        if isinstance(v, str) or (v is not None and not (isinstance(v, float) and math.isnan(v))):
            return v
    return default


def summarise(results: ResultsSet) -> list:
    """One :class:`Entry` per (model, dataset, metric identity) over the ok rows, sorted."""
    ok = results.rows[(results.rows["status"] == "ok") & results.rows["metric"].notna()]
    entries = []
    for (model, dataset, ident), g in ok.groupby(["model", "dataset", "id"], sort=True):
        values = g["value"].astype(float)
        k = len(values)
        if k > 1:
            stderr = float(values.std(ddof=1) / math.sqrt(k))
        else:
            own = g["stderr"].iloc[0]
            stderr = None if own is None or pd.isna(own) else float(own)
        units, estimators = set(g["unit"].fillna("")), set(g["estimator"].fillna(""))
        direction = _first(g["higher_is_better"], None)
        entries.append(Entry(
            model=model, dataset=dataset, id=ident, metric=str(g["metric"].iloc[0]),
            family=str(_first(g["family"], "")), unit=" | ".join(sorted(units)),
            estimator=" | ".join(sorted(estimators)), higher_is_better=None if direction is None else bool(direction),
            mean=float(values.mean()), stderr=stderr, n_seeds=k, seeds=sorted(int(s) for s in g["seed"]),
        ))
    return entries


def hparams_hash(hparams) -> str:
    return hashlib.sha256(json.dumps(hparams, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_baseline(results: ResultsSet, created: Optional[str] = None) -> dict:
    """The baseline document of a results set (see :func:`write_baseline`)."""
    entries = summarise(results)
    if not entries:
        raise UserError(f"no ok measurements in {results.source}: nothing to put in a baseline")
    unknown = sorted({e.id for e in entries if e.higher_is_better is None})
    if unknown:
        raise UserError(f"direction (higher or lower is better) unknown for {', '.join(unknown)}; "
                        "save the results directory rather than its CSV")
    models = {}
    for e in entries:
        if e.model not in models:
            info = {"family": e.family}
            if e.model in results.hparams:
                info["hparams"] = results.hparams[e.model]
                info["hparams_hash"] = hparams_hash(results.hparams[e.model])
            models[e.model] = info
    used = sorted({e.dataset for e in entries})
    return {
        "format": BASELINE_FORMAT,
        "created": created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": results.source,
        "profile": results.profile(),
        "seeds": results.seeds,
        "versions": dict(sorted(results.versions.items())),
        "datasets": {d: results.datasets.get(d) for d in used},
        "models": dict(sorted(models.items())),
        "entries": [_entry_dict(e) for e in sorted(entries, key=lambda e: (e.dataset, e.model, e.id))],
    }


def _entry_dict(e: Entry) -> dict:
    d = asdict(e)
    return {k: d[k] for k in ("dataset", "model", "id", "metric", "unit", "estimator", "higher_is_better", "mean",
                              "stderr", "n_seeds", "seeds")}


def write_baseline(baseline: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(baseline, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_baseline(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"no baseline at {path}; make one with `python -m harness baseline save RESULTS --to {path}`")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise UserError(f"{path} is not a harness baseline (format {BASELINE_FORMAT!r} expected)")
    for key in ("profile", "entries", "datasets"):
        if key not in doc:
            raise UserError(f"baseline {path} has no {key!r}")
    return doc


def baseline_entries(doc: dict) -> list:
    return [Entry(model=e["model"], dataset=e["dataset"], id=e["id"], metric=e.get("metric", e["id"]),
                  family=doc.get("models", {}).get(e["model"], {}).get("family", ""), unit=e.get("unit", ""),
                  estimator=e.get("estimator", ""), higher_is_better=e["higher_is_better"], mean=float(e["mean"]),
                  stderr=e.get("stderr"), n_seeds=int(e.get("n_seeds", 1)), seeds=list(e.get("seeds", [])))
            for e in doc["entries"]]


# ----------------------------------------------------------------------------- comparison

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
        tol = tolerance_for(b.id, b.unit, b.estimator, tolerances)
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


# ----------------------------------------------------------------------------- rendering

def _num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}" if a >= 100 else f"{v:.4f}" if a < 1 else f"{v:.3f}"


def _cell(e: Optional[Entry]) -> str:
    if e is None:
        return "-"
    text = _num(e.mean)
    if e.stderr:
        text += f" ± {_num(e.stderr)}"
    return f"{text} (n={e.n_seeds})"


def _change(r: Row) -> str:
    d = r.decision
    if d is None:
        return ""
    if r.tolerance is not None and r.tolerance.ratio:
        return f"x{d.ratio:.3g}" if math.isfinite(d.ratio) else _num(d.delta)
    rel = f" ({100 * d.ratio - 100:+.1f}%)" if math.isfinite(d.ratio) else ""
    return f"{'+' if d.delta >= 0 else ''}{_num(d.delta)}{rel}"


def _p(r: Row) -> str:
    d = r.decision
    if d is None:
        return ""
    if d.test == "floor-only":
        return "floor only"
    p = d.p_better if r.verdict == "better" else d.p_worse
    return f"{p:.2g} ({d.test})"


def _short(text: str, limit: int = 160) -> str:
    """Notes are cut for the table (the JSON output keeps them whole); pipes would break the table."""
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_markdown(cmp: Comparison, baseline_path: str = "", all_rows: bool = False) -> str:
    counts = cmp.counts
    failures = cmp.failures
    status = f"FAIL: {len(failures)} row(s) fail the gate" if failures else "PASS"
    doc = cmp.baseline
    versions = doc.get("versions", {})
    lines = [f"## Regression check: {status}", "",
             f"Baseline `{baseline_path or doc.get('source', '')}` (profile {doc['profile']}, seeds "
             f"{_seed_text(doc.get('seeds', []))}, harness {versions.get('harness', '?')}, torch "
             f"{versions.get('torch', '?')}, made {doc.get('created', '?')}) against `{cmp.results.source}` "
             f"(seeds {_seed_text(cmp.results.seeds)}).", "",
             f"A row is *worse* only when it moved the wrong way by more than its floor AND a one-sided test "
             f"(Welch's t across seeds; z with one seed) gives p < {cmp.alpha:g}. Speed rows compare ratios.", ""]
    shown = [r for r in cmp.rows if all_rows or r.verdict != "unchanged"]
    if shown:
        table = pd.DataFrame([{
            "verdict": r.verdict, "model": r.model, "dataset": r.dataset,
            "metric": f"{r.id} [{r.unit}]" if r.unit else r.id, "baseline": _cell(r.baseline),
            "current": _cell(r.current), "change": _change(r),
            "floor": r.tolerance.describe() if r.tolerance else "", "p": _p(r), "note": _short(r.note),
        } for r in shown])
        if not table["note"].astype(bool).any():
            table = table.drop(columns="note")
        lines += [table.to_markdown(index=False), ""]
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER)
    lines.append(f"{len(cmp.rows)} rows: {summary}" + (" (missing rows allowed)" if cmp.allow_missing else "") + ".")
    if cmp.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in cmp.notes]]
    if any(r.verdict != "failed" for r in failures):  # a failed job needs a fix, not a new baseline
        lines += ["", "If a change is intended, refresh the baseline deliberately: `"
                  + REFRESH_COMMANDS.format(profile=doc["profile"], path=baseline_path or "reports/baseline/NAME.json")
                  + "` and commit it with a message that says why the numbers moved."]
    return "\n".join(lines) + "\n"


def render_baseline(doc: dict) -> str:
    """A Markdown view of a baseline document (``baseline show``)."""
    lines = [f"# baseline ({doc['profile']})", "",
             f"- created: {doc.get('created', '?')}", f"- source: {doc.get('source', '?')}",
             f"- seeds: {_seed_text(doc.get('seeds', []))}"]
    for k, v in doc.get("versions", {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", "| dataset | hash |", "|:--|:--|"]
    lines += [f"| {d} | {(h or 'unknown')[:16]} |" for d, h in doc["datasets"].items()]
    lines += ["", "| model | family | hparams hash |", "|:--|:--|:--|"]
    lines += [f"| {m} | {i.get('family', '')} | {i.get('hparams_hash', 'unknown')} |"
              for m, i in doc.get("models", {}).items()]
    table = pd.DataFrame([{
        "dataset": e["dataset"], "model": e["model"], "metric": e["id"], "unit": e.get("unit", ""),
        "direction": "higher" if e["higher_is_better"] else "lower", "estimator": e.get("estimator", ""),
        "mean": _num(e["mean"]), "stderr": _num(e.get("stderr")), "seeds": e.get("n_seeds", 1),
    } for e in doc["entries"]])
    lines += ["", table.to_markdown(index=False) if not table.empty else "(no entries)"]
    return "\n".join(lines) + "\n"
