"""Per-example values of a run's jobs: what each measurement that is a mean over test examples scored on
every example, kept beside the results so that any later command can pair two models, or two runs,
example by example (:mod:`harness.evidence`).

One file per job that has any, written by the coordinator as the job's result arrives (so it exists
under every executor and with ``--no-artifacts``; the saved models are another matter)::

    DIR/per-example/<model>-<dataset>-s<seed>-<first 8 hex digits of the job key>.safetensors
      values/<id>    float32 (N,): the measurement's value on each example (the value is their mean)
      indices/<id>   int32 (N,): which example of the test split each value belongs to (the evaluation
                     subset's indices, harness.contracts.evaluation_indices)
      metadata       format, job key, model, dataset, seed

``<id>`` is the measurement's identity (``nll``, ``nll_gap``). mnist5k's 1,000 test examples take 8 kB
per measurement. The file is written to a temporary name and renamed, so a reader sees a whole file or
none; a job that runs again (``--resume``) replaces it. Readers find a job's file from its model,
dataset, seed and key, and check the key it records.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable, Optional, Tuple

import numpy as np

PER_EXAMPLE_DIR = "per-example"
SUFFIX = ".safetensors"
FORMAT = "harness-per-example/1"
VALUES, INDICES = "values/", "indices/"


def file_for(run_dir, model: str, dataset: str, seed: int, key: str) -> Path:
    """Where the per-example values of a job are (whether or not it has any)."""
    from harness.artifacts import folder_name

    return Path(run_dir) / PER_EXAMPLE_DIR / (folder_name(model, dataset, seed, key) + SUFFIX)


def write(run_dir, job, measurements: Iterable) -> Optional[Path]:
    """Write the per-example values of ``measurements`` (those that carry them) for ``job``; None when
    none does. Replaces an earlier file of the same job."""
    from safetensors.numpy import save_file

    tensors = {}
    for m in measurements:
        if m.per_example is None:
            continue
        ident = m.id or m.metric
        tensors[VALUES + ident] = np.ascontiguousarray(m.per_example.values, dtype=np.float32)
        tensors[INDICES + ident] = np.ascontiguousarray(m.per_example.indices, dtype=np.int32)
    if not tensors:
        return None
    path = file_for(run_dir, job.model, job.dataset, job.seed, job.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    metadata = {"format": FORMAT, "key": job.key, "model": job.model, "dataset": job.dataset, "seed": str(job.seed)}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read(path: Path, key: Optional[str] = None) -> dict:
    """identity -> (indices int64, values float64) of one job's file; {} when there is no file, or when
    ``key`` is given and the file records another job's key."""
    from safetensors import safe_open

    if not Path(path).is_file():
        return {}
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if key is not None and meta.get("key") != key:
            return {}
        arrays = {name: f.get_tensor(name) for name in f.keys()}
    out = {}
    for name, values in arrays.items():
        if name.startswith(VALUES) and INDICES + name[len(VALUES):] in arrays:
            ident = name[len(VALUES):]
            out[ident] = (arrays[INDICES + ident].astype(np.int64), values.astype(np.float64))
    return out


class Reader:
    """The per-example values of one run directory, each job's file read once."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self._jobs: dict = {}

    def job(self, model: str, dataset: str, seed: int, key: str) -> dict:
        """identity -> (indices, values) of one job ({} when it kept none)."""
        if key not in self._jobs:
            self._jobs[key] = read(file_for(self.run_dir, model, dataset, seed, key), key)
        return self._jobs[key]

    def seeds(self, model: str, dataset: str, ident: str, seed_keys: Iterable[Tuple[int, str]]):
        """``model``'s per-example values of ``ident`` over the seeds ``seed_keys`` ((seed, job key) of the
        jobs a summary used) as a :class:`harness.evidence.PerExample`, or None when a seed kept none or the
        seeds were evaluated on different examples."""
        from harness.errors import UserError
        from harness.evidence import PerExample

        rows = []
        for seed, key in sorted(seed_keys):
            found = self.job(model, dataset, int(seed), str(key)).get(ident)
            if found is None:
                return None
            rows.append(found)
        if not rows:
            return None
        try:
            return PerExample.from_seeds(model, rows)
        except UserError:
            return None
