"""Trained-model artifacts: what every ok job leaves in its run directory, so a fitted model outlives
its job (re-measured by ``evaluate``, shown by the report).

Layout, one folder per job key::

    DIR/artifacts/<job key>/
      state.safetensors   the fitted model (``Model.export_state``); loads without executing code
      meta.json           model, family, dataset, seed, profile, resolved hyperparameters, dataset
                          provenance, versions, job key, state format
      samples.npy         float32 (SAMPLE_COUNT, *event_shape) in data space, drawn with a generator
                          seeded by the job's seed (SAMPLE_SEED_OFFSET): the same draw every time
      sample_labels.npy   int64 (SAMPLE_COUNT,) labels the samples were drawn for (conditional models
                          on labelled data: 0..C-1 cycling)
      density.npz         2-D continuous datasets, models with a likelihood: ``x`` (G,), ``y`` (G,),
                          ``log_density`` (G, G) on :func:`density_grid` (row i is y[i], column j is x[j])

The grid is a function of the dataset alone, so every model of a dataset and the true density are
drawn on the same axes.
"""

from __future__ import annotations

import torch

ARTIFACTS_DIR = "artifacts"
STATE_FILE = "state.safetensors"
META_FILE = "meta.json"
SAMPLES_FILE = "samples.npy"
SAMPLE_LABELS_FILE = "sample_labels.npy"
DENSITY_FILE = "density.npz"

SAMPLE_COUNT = 64  # images: an 8x8 grid; 2-D data: a scatter (reports may draw more from the model)
SAMPLE_SEED_OFFSET = 777
GRID_SIZE = 64


def density_grid(dataset, size: int = GRID_SIZE) -> tuple:
    """``(x, y)``: 1-D float64 tensors of ``size`` points spanning the dataset's test split (its 0.5% to
    99.5% quantiles per axis, widened by 10% on each side) for 2-D density plots."""
    test = dataset.test.x.double().reshape(len(dataset.test), -1)
    if test.shape[1] != 2:
        raise ValueError(f"density grids are for 2-D data; {dataset.name} has {test.shape[1]} dimensions")
    lo = torch.quantile(test, 0.005, dim=0)
    hi = torch.quantile(test, 0.995, dim=0)
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    return (torch.linspace(float(lo[0]), float(hi[0]), size, dtype=torch.float64),
            torch.linspace(float(lo[1]), float(hi[1]), size, dtype=torch.float64))


def grid_points(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The (G*G, 2) points of the grid in row-major order: point i*G + j is (x[j], y[i])."""
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
