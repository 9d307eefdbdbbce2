"""A results set, one side of a comparison: a results directory read through its store, or a
results.csv, reduced to the newest job per (model, dataset, seed, profile), with the declarations of
its outputs and the machine its runs recorded, and summarised per (model, dataset, metric identity)
with the report's own summary (:func:`harness.summary.summarise`). A directory also gives each entry's
per-example values, where its jobs kept them (:meth:`ResultsSet.per_example`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from harness.comparison.reference_level import reference_levels
from harness.comparison.rule import Stats
from harness.contracts import UserError
from harness.jobs import JobStatus
from harness.store import STORE_NAME, Store
from harness.summary import summarise as summarise_table


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
    outputs: dict = field(default_factory=dict)  # measurement name -> Output, as declared by the metrics
    machines: dict = field(default_factory=dict)  # run id -> {"id", "fingerprint", "calibration"} (if recorded)
    owners: dict = field(default_factory=dict)  # models / datasets / outputs -> name -> plugin (if recorded)
    directory: Optional[Path] = None  # the results directory (None for a CSV): where per-example values are
    _reader: object = field(default=None, init=False, repr=False, compare=False)

    def per_example(self, entry: "Entry"):
        """The entry's per-example values over its seeds (:class:`harness.evidence.PerExample`), or None
        where a seed kept none (a CSV, a metric without them, a store written before they were kept)."""
        if self.directory is None or not entry.seed_keys:
            return None
        if self._reader is None:
            from harness.per_example import Reader

            self._reader = Reader(self.directory)
        return self._reader.seeds(entry.model, entry.dataset, entry.id, entry.seed_keys)

    @property
    def profiles(self) -> list:
        return sorted(p for p in self.rows["profile"].dropna().unique())

    @property
    def seeds(self) -> list:
        ok = self.rows[self.rows["status"] == JobStatus.OK]
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


def _read_store(directory: Path, known: Mapping) -> ResultsSet:
    store = Store(directory, read_only=True)
    try:
        df = store.results()
        runs = store.runs()
        outputs = store.outputs(known)
    except pd.errors.DatabaseError as exc:
        raise UserError(f"{directory / STORE_NAME} is not a harness results store: {exc}") from None
    finally:
        store.close()
    df = _latest_jobs(df, "finished")
    df["id"] = df["id"].where(df["id"].notna(), df["metric"])
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
    machines: dict = {}
    owners: dict = {}
    for run in runs:
        if run["run_id"] in used_runs:
            info = run["info"]
            for kind, names in (info.get("owners") or {}).items():
                owners.setdefault(kind, {}).update(names)
            for k in ("harness", "torch", "python", "platform", "device"):
                if k in info:
                    versions.setdefault(k, [])
                    if str(info[k]) not in versions[k]:
                        versions[k].append(str(info[k]))
            if "machine" in info:
                machines[run["run_id"]] = info["machine"]
    return ResultsSet(
        source=str(directory), rows=df.reset_index(drop=True),
        datasets={d: next(iter(h)) for d, h in datasets.items()},
        hparams={m: (h[0] if len(h) == 1 else h) for m, h in hparams.items()},
        versions={k: ", ".join(v) for k, v in versions.items()},
        outputs=outputs, machines=machines, owners=owners, directory=Path(directory),
    )


def _read_csv(path: Path, outputs: Optional[Mapping]) -> ResultsSet:
    df = pd.read_csv(path)
    missing = {"model", "dataset", "seed", "profile", "metric", "value", "status"} - set(df.columns)
    if missing:
        raise UserError(f"{path} is not a harness results.csv (no column(s) {', '.join(sorted(missing))})")
    for col in ("family", "stderr", "unit", "estimator", "reason", "run_id", "id", "protocol"):
        if col not in df.columns:
            df[col] = None
    df["unit"] = df["unit"].fillna("")
    df["run_id"] = df["run_id"].fillna("").astype(str)
    df = _latest_jobs(df, "run_id")
    df["id"] = df["id"].where(df["id"].notna(), df["metric"])
    outputs = dict(outputs or {})
    df["higher_is_better"] = [outputs[m].higher_is_better if isinstance(m, str) and m in outputs else None
                              for m in df["metric"]]
    notes = [f"{path} is a CSV: it carries no dataset hashes or hyperparameters; directions and tolerances "
             "come from the installed metrics. Save and compare the results directory to check provenance."]
    return ResultsSet(source=str(path), rows=df.reset_index(drop=True), notes=notes, outputs=outputs)


def load_results(path, outputs: Optional[Mapping] = None) -> ResultsSet:
    """Read a results directory (its results.sqlite) or a results.csv.

    A CSV next to a results.sqlite is read through the store, which keeps provenance and the metrics'
    declarations. ``outputs`` (measurement name -> Output; the CLI passes the installed metrics')
    gives directions and tolerances for CSV rows and for measurements a store does not declare, and the
    role and scaling of declarations stored before outputs declared them.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".csv" and (path.parent / STORE_NAME).exists():
        path = path.parent
    if path.is_dir():
        if not (path / STORE_NAME).exists():
            if (path / "results.csv").exists():
                return _read_csv(path / "results.csv", outputs)
            raise UserError(f"no results in {path} (expected {path / STORE_NAME}); "
                            f"run `python -m harness run --out {path}` first")
        results = _read_store(path, outputs or {})
        results.outputs = {**dict(outputs or {}), **results.outputs}
        return results
    if path.is_file() and path.suffix == ".csv":
        return _read_csv(path, outputs)
    raise UserError(f"{path} is neither a results directory nor a results.csv")


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
    reference_level: Optional[float] = None  # what held-out data scores (details REFERENCE_LEVEL), if recorded
    protocol: Optional[dict] = None  # the settings that change what the number means; None: not recorded
    seed_keys: list = field(default_factory=list)  # (seed, job key) of the jobs summarised (a directory's)

    @property
    def key(self) -> tuple:
        return (self.model, self.dataset, self.id)

    @property
    def stats(self) -> Stats:
        return Stats(self.mean, math.nan if self.stderr is None else self.stderr, self.n_seeds)


def summarise(results: ResultsSet) -> list:
    """One :class:`Entry` per (model, dataset, metric identity) over the ok rows, sorted; the numbers are
    the report's summary (:func:`harness.summary.summarise`)."""
    table = summarise_table(results.rows)
    levels = reference_levels(results.rows)
    entries = []
    for r in table.itertuples(index=False):
        stderr = None if r.stderr is None or not math.isfinite(r.stderr) else float(r.stderr)
        entries.append(Entry(model=r.model, dataset=r.dataset, id=r.label, metric=r.metric, family=r.family,
                             unit=r.unit, estimator=r.estimator,
                             higher_is_better=None if r.higher_is_better is None else bool(r.higher_is_better),
                             mean=r.mean, stderr=stderr, n_seeds=int(r.seeds), seeds=list(r.seed_list),
                             reference_level=levels.get((r.model, r.dataset, r.label)),
                             protocol=r.protocol, seed_keys=[tuple(k) for k in r.seed_keys]))
    return sorted(entries, key=lambda e: e.key)
