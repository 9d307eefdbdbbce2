"""The pinwheel toy: FFJORD's five-armed pinwheel, its sampler and its true log-density.

Class k ~ U{0..4}; f ~ N((1, 0), diag(0.3^2, 0.1^2)); angle phi = 2 pi k / 5 + 0.25 exp(f_0);
y = 2 f R(phi) with R(phi) = [[cos, -sin], [sin, cos]], i.e. in complex notation y = 2 f exp(-i phi).
The density is a change of variables summed over every pre-image of a point
(:func:`pinwheel_log_density`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

LOG_2PI = math.log(2 * math.pi)
PINWHEEL_CLASSES = 5
PINWHEEL_RADIAL_SD = 0.3
PINWHEEL_TANGENTIAL_SD = 0.1
PINWHEEL_RATE = 0.25


def pinwheel_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    k = rng.integers(0, PINWHEEL_CLASSES, n)
    f = rng.standard_normal((n, 2)) * np.array([PINWHEEL_RADIAL_SD, PINWHEEL_TANGENTIAL_SD])
    f[:, 0] += 1.0
    phi = 2 * math.pi * k / PINWHEEL_CLASSES + PINWHEEL_RATE * np.exp(f[:, 0])
    c, s = np.cos(phi), np.sin(phi)
    return 2 * np.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], 1)


def _wrap(a: torch.Tensor) -> torch.Tensor:
    """Angle into [-pi, pi)."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def _pinwheel_feature_log_density(f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((f0 - 1) / PINWHEEL_RADIAL_SD) ** 2 - 0.5 * (f1 / PINWHEEL_TANGENTIAL_SD) ** 2
            - LOG_2PI - math.log(PINWHEEL_RADIAL_SD * PINWHEEL_TANGENTIAL_SD))


def _pinwheel_phase(r: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h(alpha) = alpha - 0.25 exp(r cos alpha) (the output angle before the class rotation) and its
    derivative h'(alpha) = 1 + 0.25 r sin(alpha) exp(r cos alpha)."""
    e = PINWHEEL_RATE * torch.exp(r * torch.cos(alpha))
    return alpha - e, 1 + e * r * torch.sin(alpha)


def _pinwheel_folds(r: torch.Tensor) -> torch.Tensor:
    """(N, 2) angles where h'(alpha) = 0 (the fold points of alpha -> h), or the minimum of h' twice
    where h' stays positive. sin(a) exp(r cos a) has one maximum and one minimum on the circle, at
    a = +-arccos(c) with r c^2 + c - r = 0, and is monotone between them, so h' has at most two
    zeros, one on each side of its minimum; bisection finds them."""
    c = torch.where(r > 1e-12, (torch.sqrt(1 + 4 * r * r) - 1) / (2 * r.clamp_min(1e-12)), torch.zeros_like(r))
    a_min = -torch.arccos(c.clamp(-1, 1))  # h' is smallest here
    a_max = torch.arccos(c.clamp(-1, 1))  # and largest here
    folds = []
    for far_end in (a_max - 2 * math.pi, a_max):  # the two monotone arcs that meet at a_min
        _, slope_at_min = _pinwheel_phase(r, a_min)
        lo, hi = torch.minimum(a_min, far_end), torch.maximum(a_min, far_end)
        decreasing_to_min = far_end < a_min  # on [a_max - 2 pi, a_min] h' decreases
        for _ in range(60):
            mid = (lo + hi) / 2
            _, slope = _pinwheel_phase(r, mid)
            go_right = (slope > 0) == decreasing_to_min
            lo, hi = torch.where(go_right, mid, lo), torch.where(go_right, hi, mid)
        folds.append(torch.where(slope_at_min < 0, (lo + hi) / 2, a_min))
    return torch.remainder(torch.stack(folds, 1), 2 * math.pi)


def _pinwheel_chunk(r: torch.Tensor, beta: torch.Tensor, grid: int) -> torch.Tensor:
    """log p for points of radius 2r and polar angle beta.

    Pre-images are bracketed on ``grid`` equal angle cells plus the two fold angles, so that h is
    monotone on every cell and moves less than pi across it: each cell then holds at most one root
    of h(alpha) = beta + 2 pi k / 5 (mod 2 pi), seen as a sign change; bisection refines it."""
    n = r.shape[0]
    uniform = torch.arange(grid + 1, dtype=torch.float64) * (2 * math.pi / grid)
    alpha = torch.sort(torch.cat([uniform.expand(n, -1), _pinwheel_folds(r)], 1), 1).values
    h, _ = _pinwheel_phase(r[:, None], alpha)
    log_terms, owners = [], []
    for k in range(PINWHEEL_CLASSES):
        target = beta + 2 * math.pi * k / PINWHEEL_CLASSES
        d = _wrap(h - target[:, None])
        lo, hi = d[:, :-1], d[:, 1:]
        bracket = ((lo < 0) != (hi < 0)) & ((hi - lo).abs() < math.pi)
        pts, cells = bracket.nonzero(as_tuple=True)
        if pts.numel() == 0:
            continue
        rr, tt = r[pts], target[pts]
        a0, a1 = alpha[pts, cells], alpha[pts, cells + 1]
        rising = hi[pts, cells] > lo[pts, cells]
        for _ in range(50):  # bisection: D = wrap(h - target) is continuous and monotone in the cell
            mid = (a0 + a1) / 2
            hm, _ = _pinwheel_phase(rr, mid)
            below = _wrap(hm - tt) < 0
            move_lo = below == rising
            a0, a1 = torch.where(move_lo, mid, a0), torch.where(move_lo, a1, mid)
        a = (a0 + a1) / 2
        _, slope = _pinwheel_phase(rr, a)
        f0, f1 = rr * torch.cos(a), rr * torch.sin(a)
        # p_Y(y) = sum over classes and pre-images of p_F(f) / (5 * 4 |d beta / d alpha|).
        log_terms.append(_pinwheel_feature_log_density(f0, f1) - torch.log(slope.abs())
                         - math.log(4 * PINWHEEL_CLASSES))
        owners.append(pts)
    out = torch.full((n,), -math.inf, dtype=torch.float64)
    if not log_terms:
        return out
    values, owner = torch.cat(log_terms), torch.cat(owners)
    peak = torch.full((n,), -math.inf, dtype=torch.float64).scatter_reduce(0, owner, values, "amax")
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, owner, torch.exp(values - peak[owner]))
    found = total > 0
    out[found] = peak[found] + torch.log(total[found])
    return out


def pinwheel_log_density(y: torch.Tensor) -> torch.Tensor:
    """True log-density of the pinwheel, by change of variables summed over every pre-image.

    In polar coordinates f = r e^{i alpha}, the map keeps |y| = 2r and sends alpha to
    beta = alpha - 2 pi k / 5 - 0.25 exp(r cos alpha), so
        p(y) = sum_k sum_{alpha: beta(alpha) = arg y} p_F(r e^{i alpha}) / (5 * 4 |1 + 0.25 r sin(alpha) e^{r cos alpha}|).
    Pre-images are bracketed on a grid of angles fine enough that the phase moves less than one
    radian a cell (so no root is missed where |y| <= 20; beyond, the density is below e^-400), then
    refined by bisection (50 halvings of a cell) to machine precision.
    """
    y = y.double().cpu()
    r = y.norm(dim=1) / 2
    beta = torch.atan2(y[:, 1], y[:, 0])
    order = torch.argsort(r)
    out = torch.empty(y.shape[0], dtype=torch.float64)
    i, n = 0, y.shape[0]
    while i < n:
        size = 4096
        while True:
            idx = order[i:i + size]
            grid = _pinwheel_grid(float(r[idx[-1]]))
            if size == 1 or grid * size <= 2**21:
                break
            size = max(1, 2**21 // grid)
        out[idx] = _pinwheel_chunk(r[idx], beta[idx], grid)
        i += idx.numel()
    return out


def _pinwheel_grid(r_max: float) -> int:
    """Angles to scan so that the phase moves by at most one radian a cell for every r <= r_max
    (|d beta / d alpha| <= 1 + 0.25 r e^r), at least 64, at most 2^19 (enough up to r = 10)."""
    fastest = 1 + PINWHEEL_RATE * r_max * math.exp(min(r_max, 10.0))
    grid = 64
    while grid < 2**19 and 2 * math.pi / grid * fastest > 1.0:
        grid *= 2
    return grid

