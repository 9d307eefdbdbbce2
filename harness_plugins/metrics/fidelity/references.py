"""The features the fidelity metrics compare, with their caches: reference splits and a job's samples.

Reference features are computed once per (dataset provenance, split, extractor fingerprint, sample
count), cached on disk under ``cache_dir/fidelity`` (or only in the run cache when there is no cache
dir) and stamped with their provenance; any stamp difference means recompute and overwrite. The
workers of a run share the files: one computes an entry under a lock while the others wait for it,
then each keeps it in memory (its run cache) for its later jobs. A job's
sample features are computed once from the job's shared samples and shared by its six metrics, so M
models cost M sample passes plus one test pass (and one train pass for the noise floor):
:data:`FEATURE_PASSES` counts them, :data:`CACHE_EVENTS` how reference features were obtained.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from harness import MetricContext, MetricSkipped

try:
    import fcntl
except ImportError:  # not on Windows: parallel workers may then compute a reference more than once
    fcntl = None
from harness.contracts import EVALUATION_SUBSET_SEED, evaluation_indices
from harness_plugins.metrics.fidelity.estimators import FeatureSet, feature_set, score, torch_fidelity_version
from harness_plugins.metrics.job_samples import job_key, job_samples

CACHE_FORMAT = 2  # 2: the reference is the evaluation subset, stamped with a hash of its indices


# Feature passes made by this module, by kind: "samples" (one per model job), "reference:test",
# "reference:train" (data splits, once per cache key). Tests check M models cost M + 1 (+ train).
FEATURE_PASSES: Counter = Counter()
# How reference features were obtained: "memory" (run cache), "disk", "stale" (stamp differed), "computed".
CACHE_EVENTS: Counter = Counter()


class FidelityUnavailable(MetricSkipped):
    """The dataset's feature extractor cannot be used here (``reason`` says why and how to fix it).

    A :class:`harness.MetricSkipped`: the runner records the metric as skipped with this reason.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _build_extractor(spec, dataset, device, data_root):
    """``spec.build(dataset, device)``, passing ``data_root`` too where the builder accepts it."""
    params = inspect.signature(spec.build).parameters.values()
    if any(p.name == "data_root" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return spec.build(dataset, device, data_root=data_root)
    return spec.build(dataset, device)


def extractor_for(dataset, feature_extractors, device="cpu", data_root=None, run_cache=None):
    """(name, extractor) for ``dataset``: built once per run (``run_cache``) and device.
    Raises :class:`FidelityUnavailable` when the dataset names none, it is not registered, or its
    ``check`` gives a reason."""
    name = dataset.spec.feature_extractor
    if not name:
        raise FidelityUnavailable(f"dataset {dataset.name!r} names no feature extractor")
    spec = feature_extractors.get(name)
    if spec is None:
        raise FidelityUnavailable(f"feature extractor {name!r} (named by dataset {dataset.name!r}) is not "
                                  f"registered; is the plugin that provides it installed and enabled?")
    reason = spec.check(data_root) if spec.check is not None else None
    if reason:
        raise FidelityUnavailable(reason)
    run_cache = {} if run_cache is None else run_cache
    key = ("fidelity:extractor", name, dataset.name, dataset.provenance, str(device))
    if key not in run_cache:
        run_cache[key] = _build_extractor(spec, dataset, torch.device(device), data_root)
    return name, run_cache[key]


# ----------------------------------------------------------------------------- reference features


SELECTION = ("harness.contracts.evaluation_indices: all of the split if it holds no more than n, else the "
             f"first n of randperm(size, seed={EVALUATION_SUBSET_SEED}), sorted")


def split_subset(x: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` examples of a split used as reference: all of it if it holds no more than ``n``,
    else the evaluation subset (:func:`harness.contracts.evaluation_indices`, in split order), the
    examples ``MetricContext.evaluation_split(n, split)`` gives every metric."""
    if len(x) <= n:
        return x
    return x[evaluation_indices(len(x), n)]


def _indices_digest(size: int, n: int) -> str:
    idx = evaluation_indices(size, n)
    return hashlib.sha256(idx.to(torch.int64).numpy().tobytes()).hexdigest()


def reference_stamp(dataset, split: str, extractor_name: str, extractor, n: int) -> dict:
    """Everything that determines cached reference features; a cache entry is used only if equal."""
    size = len(getattr(dataset, split))
    return {
        "format": CACHE_FORMAT,
        "dataset": dataset.name,
        "dataset_provenance": dataset.provenance,
        "split": split,
        "extractor": extractor_name,
        "extractor_fingerprint": extractor.fingerprint,
        "weights_sha256": getattr(extractor, "weights_sha256", None) or "",
        "n_requested": int(n),
        "n": min(int(n), size),
        "selection": SELECTION,
        "indices_sha256": _indices_digest(size, int(n)),
        "torch": str(torch.__version__),
        "torch_fidelity": torch_fidelity_version(),
    }


def reference_cache_path(cache_dir, stamp: dict) -> Path:
    stem = "-".join(str(stamp[k]) for k in ("dataset", "split", "extractor")) + f"-n{stamp['n_requested']}"
    return Path(cache_dir) / "fidelity" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) + ".pt")


def _load_cached(path: Path, stamp: dict) -> Optional[FeatureSet]:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or half-written: recompute
        CACHE_EVENTS["stale"] += 1
        return None
    if blob.get("stamp") != stamp:
        CACHE_EVENTS["stale"] += 1
        return None
    stats = {"mu": blob["mu"].numpy(), "sigma": blob["sigma"].numpy()}
    return FeatureSet(blob["features"], stats, stamp)


def _save_cached(path: Path, entry: FeatureSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"stamp": entry.stamp, "features": entry.features,
            "mu": torch.from_numpy(np.ascontiguousarray(entry.stats["mu"])),
            "sigma": torch.from_numpy(np.ascontiguousarray(entry.stats["sigma"]))}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(blob, tmp)
    os.replace(tmp.name, path)  # atomic: parallel jobs never read a half-written file


def reference_features(dataset, split: str, extractor_name: str, extractor, n: int,
                       cache_dir=None, run_cache=None) -> FeatureSet:
    """Features and statistics of ``split_subset(dataset.<split>.x, n)``: from the run cache, else the
    on-disk cache when its stamp matches, else computed (and written to both)."""
    stamp = reference_stamp(dataset, split, extractor_name, extractor, n)
    run_cache = {} if run_cache is None else run_cache
    key = ("fidelity:reference", dataset.name, split, extractor_name, int(n))
    entry = run_cache.get(key)
    if entry is not None and entry.stamp == stamp:
        CACHE_EVENTS["memory"] += 1
        return entry
    path = reference_cache_path(cache_dir, stamp) if cache_dir is not None else None
    with _computing(path):  # another worker of the run computing the same entry: wait, then read its file
        entry = _load_cached(path, stamp) if path is not None else None
        if entry is not None:
            CACHE_EVENTS["disk"] += 1
        else:
            x = split_subset(getattr(dataset, split).x, n)
            FEATURE_PASSES[f"reference:{split}"] += 1
            CACHE_EVENTS["computed"] += 1
            entry = feature_set(extractor.features(x), stamp)
            if path is not None:
                _save_cached(path, entry)
    run_cache[key] = entry
    return entry


@contextlib.contextmanager
def _computing(path: Optional[Path]):
    """Hold an exclusive lock on ``path``'s lock file (where the platform has ``fcntl``): the workers of a
    run (and runs sharing a cache dir) compute one reference once, the others wait and read it."""
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- model samples


def sample_features(ctx: MetricContext, extractor_name: str, extractor, n: int) -> FeatureSet:
    """The job's sample features: extracted once from the job's shared samples
    (:func:`harness_plugins.metrics.job_samples.job_samples`), then shared by the job's fidelity metrics.

    Only the latest job is kept (``ctx.run_cache["fidelity:samples"]``), keyed by the model job
    (model, dataset and its provenance, seed, n, the model object) and the extractor's fingerprint.
    """
    key = (*job_key(ctx, n), extractor_name, extractor.fingerprint)
    slot = ctx.run_cache.get("fidelity:samples")
    if slot is not None and slot[0] == key:
        return slot[1]
    samples = job_samples(ctx, n)
    FEATURE_PASSES["samples"] += 1
    entry = feature_set(extractor.features(samples))
    ctx.run_cache["fidelity:samples"] = (key, entry)
    return entry


# ----------------------------------------------------------------------------- noise floor


def train_vs_test(dataset, metric: str, extractor_name: str, extractor, n: int, cache_dir=None,
                  run_cache=None) -> dict:
    """The noise floor of ``metric`` at sample count ``n``: the training split against the test
    reference, computed once per run: kept in ``run_cache`` and, with a ``cache_dir``, in a file beside
    the references (stamped with both references' stamps, computed under the same lock), so the other
    workers of the run read it."""
    run_cache = {} if run_cache is None else run_cache
    key = ("fidelity:train_vs_test", metric, dataset.name, dataset.provenance, extractor_name,
           extractor.fingerprint, int(n))
    if key not in run_cache:
        reference = reference_features(dataset, "test", extractor_name, extractor, n, cache_dir, run_cache)
        train = reference_features(dataset, "train", extractor_name, extractor, n, cache_dir, run_cache)
        stamp = {"metric": metric, "test": reference.stamp, "train": train.stamp}
        path = None
        if cache_dir is not None:
            path = reference_cache_path(cache_dir, reference.stamp).with_suffix(f".{metric}-floor.json")
        with _computing(path):
            floor = _load_floor(path, stamp)
            if floor is None:
                value, stderr, extra = score(metric, train, reference)
                floor = {"value": value, "stderr": stderr, "n": train.n, "n_reference": reference.n, **extra}
                if path is not None:
                    _save_floor(path, stamp, floor)
        run_cache[key] = floor
    return run_cache[key]


def _load_floor(path: Optional[Path], stamp: dict) -> Optional[dict]:
    if path is None or not path.is_file():
        return None
    try:
        blob = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return blob["floor"] if blob.get("stamp") == json.loads(json.dumps(stamp)) else None


def _save_floor(path: Path, stamp: dict, floor: dict) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump({"stamp": stamp, "floor": floor}, tmp, default=float)
    os.replace(tmp.name, path)

