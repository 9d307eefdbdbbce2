"""Sample panels of a dataset's section, from the trained-model artifacts (:mod:`harness.artifacts`):

- image data: each model's 64 saved samples as an 8x8 grid, beside the first 64 test images of the
  evaluation subset;
- 2-D data: each model's samples as a scatter and its log-density as a heatmap, beside the test data
  and the dataset's true log-density, all on the dataset's density grid and one colour scale.

One job per (model, dataset) is shown: the lowest seed that finished ok and saved artifacts. A job
without artifacts says so in its panel; nothing here fails the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from harness.artifacts import (DENSITY_FILE, SAMPLE_COUNT, SAMPLE_LABELS_FILE, SAMPLES_FILE, artifacts_dir,
                               find_artifact)
from harness.jobs import JobStatus
from harness.report import charts
from harness.report.images import Image, png, tile, to_unit

# The colour scale of log-density heatmaps spans this many nats below its top.
DENSITY_RANGE = 12.0
# A model's peak may rise this far above the true density's before the shared scale clips it.
DENSITY_HEADROOM = 3.0

NO_SAMPLES = "no samples saved for this job"
NO_DENSITY = "no log-density saved for this job"


@dataclass
class Panel:
    title: str
    caption: str = ""
    image: Optional[Image] = None
    note: str = ""
    reference: bool = False  # the data's own panel (test images, true density)


@dataclass
class JobArtifacts:
    model: str
    seed: int
    folder: Optional[Path]  # None: no artifacts folder for any ok job of the pair

    def file(self, name: str) -> Optional[Path]:
        if self.folder is None:
            return None
        path = self.folder / name
        return path if path.exists() else None


def shown_jobs(df: pd.DataFrame, dataset: str, directory: Path) -> dict:
    """model -> :class:`JobArtifacts` of the job shown for it on ``dataset``: the lowest seed whose job
    has an ok measurement and an artifacts folder, else the lowest ok seed (without artifacts)."""
    rows = df[(df["dataset"] == dataset) & (df["status"] == JobStatus.OK)]
    if "key" not in rows:
        return {}
    out = {}
    for model, g in rows.groupby("model", sort=True):
        jobs = g[["seed", "key"]].drop_duplicates().sort_values("seed")
        chosen = None
        for seed, key in jobs.itertuples(index=False):
            folder = find_artifact(artifacts_dir(directory), str(key))
            if folder is not None:
                chosen = JobArtifacts(str(model), int(seed), folder)
                break
        out[str(model)] = chosen or JobArtifacts(str(model), int(jobs["seed"].iloc[0]), None)
    return out


def load_npy(path: Optional[Path]) -> tuple:
    if path is None:
        return None, ""
    try:
        return np.load(path, allow_pickle=False), ""
    except Exception as exc:
        return None, f"{path.name} is unreadable: {exc}"


def _load_density(path: Optional[Path]) -> tuple:
    if path is None:
        return None, ""
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y, ld = (np.asarray(f[k], dtype=np.float64) for k in ("x", "y", "log_density"))
        if ld.shape != (len(y), len(x)):
            return None, f"{path.name}: log_density is {ld.shape}, the grid {len(y)} x {len(x)}"
        return (x, y, ld), ""
    except Exception as exc:
        return None, f"{path.name} is unreadable: {exc}"


def reference_indices(size: int, eval_examples: Optional[int], count: int = SAMPLE_COUNT):
    """The first ``count`` indices of the evaluation subset of a split of ``size`` examples."""
    from harness.contracts import evaluation_indices

    return evaluation_indices(size, eval_examples)[:count]


def image_panels(jobs: dict, spec, data, reason: str, eval_examples: Optional[int]) -> list:
    """The real test images, then one sample grid per model."""
    levels = getattr(spec, "levels", None)
    panels = []
    if data is not None:
        idx = reference_indices(len(data.test), eval_examples)
        grid = tile(to_unit(channels(data.test.x[idx].numpy()), levels))
        panels.append(Panel("test data", f"the first {len(idx)} test images of the evaluation subset",
                            png(grid), reference=True))
    else:
        panels.append(Panel("test data", note=reason or "the dataset is not loaded here", reference=True))
    for model, job in jobs.items():
        samples, problem = load_npy(job.file(SAMPLES_FILE))
        if samples is None or samples.ndim != 4:
            note = problem or (NO_SAMPLES if samples is None else f"samples have shape {samples.shape}, not images")
            panels.append(Panel(model, f"seed {job.seed}", note=note))
            continue
        caption = f"seed {job.seed}, {len(samples)} samples"
        labels, _ = load_npy(job.file(SAMPLE_LABELS_FILE))
        if labels is not None:
            caption += f", conditioned on labels {_label_text(labels)} (row by row)"
        panels.append(Panel(model, caption, png(tile(to_unit(channels(samples), levels)))))
    return panels


def channels(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) with 1 or 3 channels (others: the first channel)."""
    x = np.asarray(x, dtype=np.float64)
    return x if x.shape[1] in (1, 3) else x[:, :1]


def _label_text(labels: np.ndarray) -> str:
    uniq = sorted({int(v) for v in labels.reshape(-1)})
    if uniq and uniq == list(range(uniq[0], uniq[-1] + 1)) and len(uniq) > 2:
        return f"{uniq[0]}..{uniq[-1]}"
    return ", ".join(map(str, uniq))


def _truth(spec, data) -> tuple:
    """((x, y, log_density) on the dataset's density grid, test points), or Nones with the reason."""
    from harness.artifacts import density_grid, grid_points

    import torch

    x, y = density_grid(data)
    if spec.log_density is None:
        return (x.numpy(), y.numpy(), None), "the dataset declares no true density"
    with torch.no_grad():
        ld = spec.log_density(grid_points(x, y).to(torch.float32)).double().reshape(len(y), len(x))
    return (x.numpy(), y.numpy(), ld.numpy()), ""


def density_panels(jobs: dict, spec, data, reason: str, eval_examples: Optional[int]) -> list:
    """The test data and the true log-density, then one card per model (samples and log-density)."""
    densities, samples = {}, {}
    notes = {}
    for model, job in jobs.items():
        s, p1 = load_npy(job.file(SAMPLES_FILE))
        d, p2 = _load_density(job.file(DENSITY_FILE))
        samples[model] = s.reshape(len(s), -1)[:, :2] if s is not None and s.size and s.ndim >= 2 else None
        densities[model] = d
        notes[model] = (p1 or NO_SAMPLES, p2 or NO_DENSITY)
    truth, truth_note, test_points = None, reason, None
    extent = None
    if data is not None:
        (gx, gy, ld), truth_note = _truth(spec, data)
        truth = (gx, gy, ld) if ld is not None else None
        extent = (gx[0], gx[-1], gy[0], gy[-1])
        idx = reference_indices(len(data.test), eval_examples)
        test_points = data.test.x[idx].reshape(len(idx), -1).numpy()
    if extent is None:
        grids = [d for d in densities.values() if d is not None]
        pts = [s for s in samples.values() if s is not None and len(s)]
        if grids:
            gx, gy, _ = grids[0]
            extent = (gx[0], gx[-1], gy[0], gy[-1])
        elif pts:
            allp = np.concatenate(pts)
            lo, hi = np.nanquantile(allp, 0.005, axis=0), np.nanquantile(allp, 0.995, axis=0)
            pad = 0.1 * (hi - lo)
            extent = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    vmin, vmax = colour_scale(truth[2] if truth else None, [d[2] for d in densities.values() if d is not None])
    panels = []
    if extent is None:
        return [Panel("test data", note=reason or "nothing to draw", reference=True)] + \
               [Panel(m, f"seed {j.seed}", note=NO_SAMPLES) for m, j in jobs.items()]
    if data is not None:
        panels.append(Panel("test data and true density", "the first test points of the evaluation subset; "
                            "the dataset's true log-density on the same grid and colour scale",
                            charts.density_card("data", extent, test_points, truth[2] if truth else None, vmin,
                                                vmax, ("", truth_note), colorbar=True, sample_label="test points"),
                            reference=True))
    else:
        panels.append(Panel("test data and true density", note=reason or "the dataset is not loaded here",
                            reference=True))
    for model, job in jobs.items():
        s, d = samples[model], densities[model]
        if s is None and d is None:
            panels.append(Panel(model, f"seed {job.seed}", note=notes[model][0]))
            continue
        d_extent = (d[0][0], d[0][-1], d[1][0], d[1][-1]) if d is not None else None
        image = charts.density_card(f"{model} (seed {job.seed})", extent, s, d[2] if d is not None else None,
                                    vmin, vmax, notes[model], density_extent=d_extent)
        panels.append(Panel(model, f"seed {job.seed}", image))
    return panels


def colour_scale(truth: Optional[np.ndarray], models: list) -> tuple:
    """(vmin, vmax) shared by every heatmap of a dataset: the top is the highest log-density drawn
    (at most DENSITY_HEADROOM nats above the truth's peak), the bottom DENSITY_RANGE nats below it."""
    tops = [float(np.nanmax(np.where(np.isfinite(a), a, np.nan))) for a in models
            if np.isfinite(a).any()]
    if truth is not None and np.isfinite(truth).any():
        peak = float(np.nanmax(np.where(np.isfinite(truth), truth, np.nan)))
        vmax = min(max([peak] + tops), peak + DENSITY_HEADROOM)
    elif tops:
        vmax = max(tops)
    else:
        vmax = 0.0
    return vmax - DENSITY_RANGE, vmax


def dataset_panels(df: pd.DataFrame, dataset: str, directory: Path, source=None,
                   eval_examples: Optional[int] = None) -> tuple:
    """``(panels, note)`` for one dataset's section; ``note`` says why there are none."""
    jobs = shown_jobs(df, dataset, directory)
    if not jobs:
        return [], "no job finished ok on this dataset"
    spec = source.spec(dataset) if source is not None else None
    data, reason = (source.load(dataset) if source is not None else (None, "datasets are not loaded for this report"))
    shape = tuple(spec.event_shape) if spec is not None else _shape_from_artifacts(jobs)
    if shape is None:
        return [Panel(m, f"seed {j.seed}", note=NO_SAMPLES) for m, j in jobs.items()], ""
    if len(shape) == 3:
        return image_panels(jobs, spec, data, reason, eval_examples), ""
    if shape == (2,):
        return density_panels(jobs, spec, data, reason, eval_examples), ""
    return [], f"no sample view for data of shape {shape}"


def _shape_from_artifacts(jobs: dict) -> Optional[tuple]:
    for job in jobs.values():
        path = job.file(SAMPLES_FILE)
        if path is not None:
            try:
                return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape[1:])
            except Exception:
                continue
    return None


def profile_of(df: pd.DataFrame):
    """The :class:`harness.profiles.Profile` the results were made with (None: several, or unknown)."""
    from harness.profiles import PROFILES

    profiles = sorted(df["profile"].dropna().unique()) if "profile" in df else []
    return PROFILES.get(profiles[0]) if len(profiles) == 1 else None


def eval_examples_of(df: pd.DataFrame) -> Optional[int]:
    """The evaluation-subset size of the results' profile (None: all; unknown profiles: all)."""
    profile = profile_of(df)
    n = profile.eval_examples if profile is not None else None
    return n if n and not math.isnan(n) else None
