"""How the kit integrates a density: 2-D midpoint quadrature for continuous data, enumeration for
tiny discrete and binary spaces.

Quadrature. The box is the data's range widened by :data:`BOX_MARGIN` of it on each side; the
integral is the midpoint rule on a G x G grid, and its error is estimated by the difference from the
rule at half the resolution, |I(G) - I(G/2)|: the midpoint rule's error falls as 1/G^2 for a smooth
density, so this difference is about three times the error of I(G) (Richardson), a safe margin.

Enumeration. A discrete space of K levels in D units has K^D states; up to :data:`MAX_STATES` of them
are scored and the probabilities summed (float64), which is exact up to rounding. A Monte-Carlo score
(an IWAE bound, a dequantisation bound from one noise draw) is a bound on average only, so each state
can be scored ``replicates`` times in the same call (rows get independent draws) and exp(score)
averaged over them before summing; the sum's noise falls by the square root of ``replicates``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

GRID = 128
BOX_MARGIN = 0.25
MAX_STATES = 4096
BATCH = 8192


@dataclass
class Integral:
    """The mass of a density (sum of exp(log p) times the cell size) and what it was computed on."""

    value: float
    error: float  # quadrature error estimate (0 for an enumeration)
    what: str  # "a 256x256 grid over [..]" / "all 81 states"
    lo: Optional[torch.Tensor] = None  # the box, for quadrature
    hi: Optional[torch.Tensor] = None


def box(x: torch.Tensor) -> tuple:
    """(lo, hi): the per-axis range of ``x`` (N, 2) widened by :data:`BOX_MARGIN` of the range on each side."""
    x = x.reshape(x.shape[0], -1).double()
    lo, hi = x.min(0).values, x.max(0).values
    pad = BOX_MARGIN * (hi - lo).clamp_min(1e-6)
    return lo - pad, hi + pad


def inside(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Boolean (N,): which points of ``x`` lie in the box."""
    x = x.reshape(x.shape[0], -1).double()
    return ((x >= lo) & (x <= hi)).all(1)


def _midpoint(log_density: Callable, lo, hi, size: int, shape: tuple) -> float:
    h = (hi - lo) / size
    axes = [lo[i] + h[i] * (torch.arange(size, dtype=torch.float64) + 0.5) for i in range(2)]
    xx, yy = torch.meshgrid(axes[0], axes[1], indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).float()
    total = 0.0
    for chunk in points.split(BATCH):
        lp = log_density(chunk.reshape(len(chunk), *shape)).double()
        total += float(torch.exp(lp).sum())
    return total * float(h[0] * h[1])


def grid_integral(log_density: Callable, lo, hi, shape: tuple = (2,), size: int = GRID) -> Integral:
    """The integral of exp(log_density) over the box [lo, hi] of a 2-D space, with its error estimate.

    ``log_density`` takes points shaped (N, *shape) (float32) and returns (N,) log-densities."""
    fine = _midpoint(log_density, lo, hi, size, shape)
    coarse = _midpoint(log_density, lo, hi, size // 2, shape)
    where = ", ".join(f"[{float(a):.3g}, {float(b):.3g}]" for a, b in zip(lo, hi))
    return Integral(fine, abs(fine - coarse), f"a {size}x{size} grid over {where}", lo, hi)


def states(levels: int, dim: int) -> torch.Tensor:
    """Every state of ``dim`` units with ``levels`` levels, shape (levels**dim, dim), float32."""
    return torch.tensor(list(itertools.product(range(levels), repeat=dim)), dtype=torch.float32)


def enumerable(levels: Optional[int], dim: int) -> bool:
    return bool(levels) and dim * math.log(levels) <= math.log(MAX_STATES) + 1e-9


def enumeration_sum(log_prob: Callable, levels: int, shape: tuple, replicates: int = 1) -> Integral:
    """sum over every state of exp(log_prob), each state scored ``replicates`` times and averaged;
    ``log_prob`` takes states shaped (N, *shape)."""
    dim = math.prod(shape)
    every = states(levels, dim).reshape(-1, *shape)
    rows = every.repeat_interleave(replicates, dim=0)
    total = 0.0
    for chunk in rows.split(max(replicates, BATCH - BATCH % replicates)):
        total += float(torch.exp(log_prob(chunk).double()).sum())
    what = f"all {len(every)} states" + (f", each scored {replicates} times" if replicates > 1 else "")
    return Integral(total / replicates, 0.0, what)
