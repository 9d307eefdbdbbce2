"""A small results directory written directly through the store, with trained-model artifacts in the
layout of harness/artifacts.py, for the report tests: no training, seconds to build.

Datasets are built-ins (8gaussians: 2-D with a true density; digits: 8x8 images, 17 levels), so the
report's reference panels come from the real plugins. On 8gaussians:

- ``alpha``: exact likelihood; samples and a log-density saved (the true density, tempered);
- ``beta``: a bound; samples saved, no density;
- ``gamma``: no likelihood (a Parzen estimate); nothing saved.

On digits ``alpha`` saves samples and sample labels, ``beta`` nothing; ``broken`` fails in fit,
and ``gamma`` on digits is a skipped pair.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from harness.artifacts import ARTIFACTS_DIR, META_FILE, density_grid, folder_name, grid_points
from harness.contracts import Measurement
from harness.jobs import Job, JobResult, JobStatus
from harness.store import Store

TOY, IMAGES = "8gaussians", "digits"

# (model, dataset) -> {identity: (name, base value, estimator, noise sd across seeds, own stderr)}
PLAN = {
    ("alpha", TOY): {"nll": ("nll", 2.95, "exact", 0.01, 0.02), "nll_gap": ("nll_gap", 0.12, "exact", 0.01, 0.02),
                     "fid@500": ("fid", 0.05, "statistic", 0.002, None),
                     "precision@500": ("precision", 0.95, "statistic", 0.005, None),
                     "modes_covered": ("modes_covered", 8.0, "statistic", 0.0, None),
                     "sample_throughput": ("sample_throughput", 2.0e6, "measured", 5e4, 1e4)},
    ("beta", TOY): {"nll": ("nll", 3.40, "bound", 0.01, 0.02), "nll_gap": ("nll_gap", 0.57, "bound", 0.01, 0.02),
                    "fid@500": ("fid", 0.40, "statistic", 0.01, None),
                    "precision@500": ("precision", 0.70, "statistic", 0.005, None),
                    "modes_covered": ("modes_covered", 7.0, "statistic", 0.0, None),
                    "sample_throughput": ("sample_throughput", 3.0e5, "measured", 1e4, 5e3)},
    ("gamma", TOY): {"parzen_nll": ("parzen_nll", 3.9, "estimate", 0.05, 0.1),
                     "fid@500": ("fid", 0.06, "statistic", 0.002, None),
                     "precision@500": ("precision", 0.90, "statistic", 0.005, None),
                     "modes_covered": ("modes_covered", 6.0, "statistic", 0.0, None),
                     "sample_throughput": ("sample_throughput", 5.0e6, "measured", 1e5, 1e4)},
    ("alpha", IMAGES): {"nll": ("nll", 100.0, "exact", 0.5, 1.0), "bpd": ("bpd", 2.25, "exact", 0.01, 0.02),
                        "fid@500": ("fid", 12.0, "statistic", 0.2, None),
                        "sample_throughput": ("sample_throughput", 2.0e5, "measured", 1e4, 1e3)},
    ("beta", IMAGES): {"nll": ("nll", 103.0, "bound", 0.5, 1.0), "bpd": ("bpd", 2.32, "bound", 0.01, 0.02),
                       "fid@500": ("fid", 25.0, "statistic", 0.5, None),
                       "sample_throughput": ("sample_throughput", 0.6, "measured", 0.05, 0.01)},
}
WITH_SAMPLES = {("alpha", TOY), ("beta", TOY), ("alpha", IMAGES)}
WITH_DENSITY = {("alpha", TOY)}
DENSITY_TEMPERATURE = 0.8  # the saved "model" density: the true log-density times this


def key_of(model: str, dataset: str, seed: int, tag: str = "") -> str:
    return hashlib.sha256(f"{model}/{dataset}/{seed}/{tag}".encode()).hexdigest()[:32]


def value_of(identity_plan: tuple, seed: int, shift: float = 0.0) -> float:
    name, base, estimator, sd, _ = identity_plan
    noise = math.sin(1.7 * seed + len(name))  # deterministic, different per seed
    return base + shift + sd * noise


def _measurement(identity: str, plan: tuple, seed: int, outputs: dict, shift: float) -> Measurement:
    name, _, estimator, _, own = plan
    out = outputs[name]
    n = int(identity.split("@")[1]) if "@" in identity else 1000
    return Measurement(name, value_of(plan, seed, shift), out.unit, estimator, out.higher_is_better, own, n,
                       id=identity)


def write_artifacts(directory: Path, key: str, model: str, dataset, seed: int) -> None:
    """The files the report reads from a job's artifact folder, and a meta.json recording its key."""
    folder = Path(directory) / ARTIFACTS_DIR / folder_name(model, dataset.name, seed, key)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).write_text(json.dumps({"key": key, "model": model, "dataset": dataset.name, "seed": seed}))
    rng = np.random.default_rng(seed)
    train = dataset.train.x.numpy()
    samples = train[rng.choice(len(train), 64, replace=False)].astype(np.float32)
    if dataset.spec.event_shape == (2,):
        samples = samples + rng.normal(0, 0.05, samples.shape).astype(np.float32)
        if (model, dataset.name) in WITH_DENSITY:
            x, y = density_grid(dataset)
            ld = dataset.spec.log_density(grid_points(x, y).float()).double().reshape(len(y), len(x))
            np.savez(folder / "density.npz", x=x.numpy(), y=y.numpy(), log_density=DENSITY_TEMPERATURE * ld.numpy())
    else:
        np.save(folder / "sample_labels.npy", np.arange(64, dtype=np.int64) % 10)
    np.save(folder / "samples.npy", samples)


def build(directory: Path, host, seeds=(0, 1, 2), shift: dict | None = None, profile: str = "smoke",
          artifacts: bool = True, run_id: str = "fixture-run") -> Path:
    """Write the fixture results into ``directory``; ``shift``: (model, dataset, identity) -> added value."""
    from harness.runner import environment_info
    from harness.data import resolve_data_root
    from harness.dataset_cache import DatasetCache

    shift = shift or {}
    directory = Path(directory)
    outputs = {name: out for name, (_, out) in host.registry.output_declarations().items()}
    cache = DatasetCache(resolve_data_root(None))
    store = Store(directory)
    store.start_run(run_id, profile, {**environment_info(torch.device("cpu"), host.plugins), "seeds": list(seeds)})
    store.record_outputs(host.registry.metrics.values())
    for (model, dname), plan in PLAN.items():
        data = cache.get(host.dataset(dname))
        for seed in seeds:
            job = Job(model, "fixture", dname, seed, profile, {"width": 8}, data.provenance)
            job.key = key_of(model, dname, seed, run_id)
            ms = [_measurement(i, p, seed, outputs, shift.get((model, dname, i), 0.0)) for i, p in plan.items()]
            result = JobResult(JobStatus.OK, measurements=ms, seconds=1.0,
                               metric_skips=[("conditional_accuracy", f"{model} lacks conditional")])
            store.record_job(job, result, run_id)
            if artifacts and (model, dname) in WITH_SAMPLES:
                write_artifacts(directory, job.key, model, data, seed)
    for seed in seeds:
        broken = Job("broken", "fixture", IMAGES, seed, profile, {}, "")
        broken.key = key_of("broken", IMAGES, seed, run_id)
        store.record_job(broken, JobResult(JobStatus.FAILED, "RuntimeError: deliberate failure in fit"), run_id)
        skipped = Job("gamma", "fixture", IMAGES, seed, profile, {}, "", skip_reason="gamma handles continuous data")
        skipped.key = key_of("gamma", IMAGES, seed, run_id)
        store.record_job(skipped, JobResult(JobStatus.SKIPPED, "gamma handles continuous data; digits is discrete"), run_id)
    store.finish_run(run_id)
    store.close()
    return directory
