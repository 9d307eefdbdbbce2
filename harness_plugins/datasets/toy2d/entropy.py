"""Entropies of the toys: the differential entropy -int p log p by the 2-D midpoint rule on a box.

Each toy's :attr:`~harness_plugins.datasets.toy2d.toy.Toy.quadrature` gives the box (holding all
but a negligible mass) and the grid spacing. The stated error is the difference from the same rule at
twice the spacing plus the mass missing from the box times (1 + |H|). Computing them takes about a
minute, too long for ``python -m harness list``, so each toy stores its result;
``python -m harness_plugins.datasets.toy2d`` recomputes and prints them.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from harness_plugins.datasets.toy2d.toy import Toy


def grid_moments(log_density, half_width: float, spacing: float) -> tuple[float, float]:
    """(integral of p, -integral of p log p) over [-w, w]^2 by the midpoint rule."""
    m = int(round(2 * half_width / spacing))
    h = 2 * half_width / m
    g = -half_width + h * (torch.arange(m, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    lp = log_density(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
    p = lp.exp()
    plogp = torch.where(p > 0, p * lp, torch.zeros_like(p))
    return float(p.sum() * h * h), float(-plogp.sum() * h * h)


def grid_entropy(log_density, half_width: float, spacing: float) -> tuple[float, float]:
    """Entropy by the 2-D midpoint rule on [-w, w]^2 with an error estimate: the difference from
    the same rule at twice the spacing, plus the mass missing from the box times (1 + |H|), and at
    least 1e-12 (floating-point summation over the grid).

    For the smooth densities here the midpoint rule converges faster than any power of the spacing,
    so the difference from the coarser grid bounds the error of the finer one generously."""
    mass, h = grid_moments(log_density, half_width, spacing)
    _, h_coarse = grid_moments(log_density, half_width, 2 * spacing)
    return h, max(abs(h - h_coarse) + abs(1 - mass) * (1 + abs(h)), 1e-12)



@lru_cache(maxsize=None)
def compute_entropy(toy: Toy) -> tuple[float, float]:
    """(entropy in nats, error estimate) of a toy by 2-D quadrature (takes seconds); the stored value
    of a toy whose entropy is exact."""
    if toy.quadrature is None:
        return toy.entropy, toy.entropy_error
    half_width, spacing = toy.quadrature
    return grid_entropy(toy.log_density, half_width, spacing)
