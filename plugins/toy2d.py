"""2-D toy densities (the generators common in the flow literature), with their true log-density
and entropy where known. Splits are generated from fixed seeds, so they are identical on every
machine and run."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from harness import DataKind, DatasetSpec, Split, hookimpl
from harness.contracts import Splits

SPLIT_SIZES = {"train": 20000, "val": 5000, "test": 5000}
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}


# ----------------------------------------------------------------------------- checkerboard
# Uniform on the 8 dark squares of a 4x4 board of side-2 cells covering [-4, 4]^2.

def checkerboard_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def checkerboard_log_density(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    inside = (x.abs() <= 4).all(1)
    cells = torch.floor(x / 2)
    dark = ((cells[:, 0] + cells[:, 1]) % 2 == 1)
    # Total area of the support: 8 squares of side 2.
    out = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
    out[inside & dark] = -math.log(32.0)
    return out


CHECKERBOARD_ENTROPY = math.log(32.0)  # uniform density on area 32: exact


# ----------------------------------------------------------------------------- 8 gaussians
# Equal mixture of 8 isotropic Gaussians, centres on a circle of radius 4/sqrt(2) (after the
# customary division by 1.414), component standard deviation 0.5/1.414.

_SCALE = 1.414
EIGHT_STD = 0.5 / _SCALE


def _eight_centres() -> np.ndarray:
    s = 1 / math.sqrt(2)
    c = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)], dtype=np.float64)
    return c * 4 / _SCALE


EIGHT_CENTRES = _eight_centres()


def eight_gaussians_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, 8, n)
    return EIGHT_CENTRES[idx] + rng.standard_normal((n, 2)) * EIGHT_STD


def eight_gaussians_log_density(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    c = torch.as_tensor(EIGHT_CENTRES)
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    log_comp = -d2 / (2 * EIGHT_STD**2) - math.log(2 * math.pi * EIGHT_STD**2)
    return torch.logsumexp(log_comp, 1) - math.log(8)


def quadrature_entropy(log_density, half_width: float, n: int = 2001) -> tuple[float, float]:
    """-integral p log p over [-w, w]^2 by the midpoint rule at n and n//2 points per axis; the
    difference between the two resolutions is returned as the error estimate."""

    def at(m: int) -> float:
        h = 2 * half_width / m
        g = -half_width + h * (torch.arange(m, dtype=torch.float64) + 0.5)
        xx, yy = torch.meshgrid(g, g, indexing="ij")
        lp = log_density(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
        p = lp.exp()
        integrand = torch.where(p > 0, -p * lp, torch.zeros_like(p))
        return float(integrand.sum() * h * h)

    fine, coarse = at(n), at(n // 2)
    return fine, abs(fine - coarse)


@lru_cache(maxsize=None)
def eight_gaussians_entropy() -> tuple[float, float]:
    return quadrature_entropy(eight_gaussians_log_density, half_width=6.0, n=401)


# ----------------------------------------------------------------------------- registration

def _make_loader(sampler):
    def load(root=None) -> Splits:
        parts = {}
        for split, size in SPLIT_SIZES.items():
            rng = np.random.default_rng(SPLIT_SEEDS[split])
            parts[split] = Split(torch.as_tensor(sampler(size, rng), dtype=torch.float32))
        return Splits(**parts)

    return load


@hookimpl
def harness_register_datasets(register):
    register(DatasetSpec(
        name="checkerboard", kind=DataKind.CONTINUOUS, event_shape=(2,),
        load=_make_loader(checkerboard_sample),
        log_density=checkerboard_log_density, entropy=CHECKERBOARD_ENTROPY, entropy_stderr=0.0,
        feature_extractor="raw", tags=("toy2d",),
        description="Uniform on the 8 dark cells of a 4x4 checkerboard on [-4,4]^2; entropy ln 32 (exact).",
    ))
    h, err = eight_gaussians_entropy()
    register(DatasetSpec(
        name="8gaussians", kind=DataKind.CONTINUOUS, event_shape=(2,),
        load=_make_loader(eight_gaussians_sample),
        log_density=eight_gaussians_log_density, entropy=h, entropy_stderr=err,
        feature_extractor="raw", tags=("toy2d",),
        description="Equal mixture of 8 Gaussians (sd 0.354) on a circle of radius 2.83; entropy by quadrature.",
    ))
