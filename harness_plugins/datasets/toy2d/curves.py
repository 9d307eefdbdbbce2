"""Noisy curves: densities of a point on a curve plus noise, by quadrature over the curve parameter.

A toy made of curves draws a point c(t) of a curve (parameter density q(t)), optionally adds uniform
jitter on a square, then isotropic Gaussian noise: p(x) = integral q(t) K(x - c(t)) dt, with K the
Gaussian kernel or the box-convolved Gaussian (closed form). The integral over t is computed by
composite Gauss-Legendre quadrature on panels of equal arc length (8 nodes a panel), summed directly
near the curve and in log space far from it (:class:`NoisyCurveToy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch


def _gaussian_norm(sd: float) -> float:
    """log of the normaliser of an isotropic 2-D Gaussian: log(2 pi sd^2)."""
    return math.log(2 * math.pi * sd * sd)


@dataclass(frozen=True)
class Curve:
    """One branch of a noisy-curve toy: points c(t), t in [lo, hi] with density q(t), chosen with
    probability ``weight``."""

    point: Callable[[np.ndarray], np.ndarray]  # t (m,) -> (m, 2)
    lo: float
    hi: float
    t_density: Callable[[np.ndarray], np.ndarray]  # q(t), integrating to 1 over [lo, hi]
    weight: float


def _arc_length_breaks(curve: Curve, panel_length: float) -> np.ndarray:
    """Panel boundaries in t such that every panel has (nearly) the same arc length <= panel_length."""
    t = np.linspace(curve.lo, curve.hi, 20001)
    pts = curve.point(t)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    panels = max(1, math.ceil(s[-1] / panel_length))
    return np.interp(np.linspace(0, s[-1], panels + 1), s, t)


def curve_nodes(curves: tuple, sd: float, refine: float = 1.0, order: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes (J, 2) and log-weights (J,) for p(x) = sum_b w_b int q_b(t) N(x; c_b(t), sd^2) dt.

    Composite Gauss-Legendre of ``order`` nodes on panels of arc length sd / refine."""
    u, v = np.polynomial.legendre.leggauss(order)
    points, log_weights = [], []
    for curve in curves:
        breaks = _arc_length_breaks(curve, sd / refine)
        a, b = breaks[:-1, None], breaks[1:, None]
        t = ((a + b) / 2 + (b - a) / 2 * u).ravel()
        w = ((b - a) / 2 * v).ravel() * curve.t_density(t) * curve.weight
        keep = w > 0
        points.append(curve.point(t[keep]))
        log_weights.append(np.log(w[keep]))
    return torch.as_tensor(np.concatenate(points)), torch.as_tensor(np.concatenate(log_weights))


class GaussianKernel:
    """The isotropic 2-D Gaussian N(0, sd^2 I)."""

    # Summing over every node (one matrix product and an exp) is cheaper than finding the near ones.
    cull = False

    def __init__(self, sd: float):
        self.sd = sd

    def log(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """log N(x_i; c_j, sd^2 I) for x (m, 2) and centres (J, 2): shape (m, J)."""
        d2 = ((x**2).sum(1, keepdim=True) + (centres**2).sum(1)[None] - 2 * x @ centres.T).clamp_min(0)
        return -d2 / (2 * self.sd**2) - _gaussian_norm(self.sd)

    def value(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """N(x_i; c_j, sd^2 I), shape (m, J); values below ~1e-308 underflow to 0."""
        return torch.exp(self.log(x, centres))

    def value_at(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """N(x_i; c_ik, sd^2 I) for x (m, 2) and a set of centres per point (m, K, 2): shape (m, K)."""
        d2 = ((x[:, None, :] - centres) ** 2).sum(-1)
        return torch.exp(-d2 / (2 * self.sd**2) - _gaussian_norm(self.sd))

    def log_sup(self, radius: float) -> float:
        """log of the largest kernel value at distance >= radius from its centre."""
        return -radius**2 / (2 * self.sd**2) - _gaussian_norm(self.sd)


class BoxGaussianKernel:
    """Uniform jitter on the square [-a, a)^2 convolved with N(0, sd^2 I), in closed form: the
    product over the two coordinates of g(u) = (Phi((u + a)/sd) - Phi((u - a)/sd)) / (2a)."""

    # Four erfc per node and point: worth summing over the near nodes only (neighbourhood_log_density).
    cull = True

    def __init__(self, half_width: float, sd: float):
        self.a = half_width
        self.sd = sd

    def g(self, u: torch.Tensor) -> torch.Tensor:
        """g(u). g is even; with v = |u| it is (erfc((v - a) r) - erfc((v + a) r)) / (4a),
        r = 1 / (sd sqrt 2): both terms are upper tails of v, so nothing cancels; it underflows to 0
        beyond v ~ a + 38 sd (use :meth:`log_g` there)."""
        v = u.abs()
        r = 1 / (self.sd * math.sqrt(2))
        return (torch.special.erfc((v - self.a) * r) - torch.special.erfc((v + self.a) * r)) / (4 * self.a)

    def log_g(self, u: torch.Tensor) -> torch.Tensor:
        """log g(u) for every u, from log Phi where g underflows."""
        v = u.abs()
        hi = torch.special.log_ndtr((self.a - v) / self.sd)
        lo = torch.special.log_ndtr((-self.a - v) / self.sd)
        return hi + torch.log1p(-torch.exp(lo - hi)) - math.log(2 * self.a)

    def log(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        return self.log_g(x[:, None, 0] - centres[None, :, 0]) + self.log_g(x[:, None, 1] - centres[None, :, 1])

    def value(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        return self.g(x[:, None, 0] - centres[None, :, 0]) * self.g(x[:, None, 1] - centres[None, :, 1])

    def value_at(self, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """K(x_i - c_ik) for x (m, 2) and centres (m, K, 2): shape (m, K)."""
        return self.g(x[:, None, 0] - centres[..., 0]) * self.g(x[:, None, 1] - centres[..., 1])

    def log_sup(self, radius: float) -> float:
        """log of the largest kernel value at distance >= radius. g decreases in |u|, so along every
        ray from the centre the kernel decreases and the largest value lies on the circle of that
        radius; found on 4097 angles of a quarter circle (the kernel is symmetric in both axes),
        plus 1 nat for the spacing."""
        angle = torch.linspace(0, math.pi / 2, 4097, dtype=torch.float64)
        on_circle = self.log_g(radius * torch.cos(angle)) + self.log_g(radius * torch.sin(angle))
        return float(on_circle.max()) + 1.0


def mixture_log_density(x: torch.Tensor, centres: torch.Tensor, log_weights: torch.Tensor, kernel,
                        entries: int = 1 << 21) -> torch.Tensor:
    """log sum_j exp(lw_j) K(x - c_j) for x (N, 2), in log space (any x), in chunks of about
    ``entries`` kernel values."""
    x = x.double().cpu()
    out = torch.empty(x.shape[0], dtype=torch.float64)
    chunk = max(1, entries // max(1, centres.shape[0]))
    for i in range(0, x.shape[0], chunk):
        out[i:i + chunk] = torch.logsumexp(log_weights[None] + kernel.log(x[i:i + chunk], centres), 1)
    return out


def mixture_density(x: torch.Tensor, centres: torch.Tensor, log_weights: torch.Tensor, kernel,
                    entries: int = 1 << 21) -> torch.Tensor:
    """sum_j exp(lw_j) K(x - c_j) in linear space: faster, exact to rounding wherever the sum is not
    tiny (terms below ~1e-308 are lost)."""
    x = x.double().cpu()
    weights = log_weights.exp()
    out = torch.empty(x.shape[0], dtype=torch.float64)
    chunk = max(1, entries // max(1, centres.shape[0]))
    for i in range(0, x.shape[0], chunk):
        out[i:i + chunk] = kernel.value(x[i:i + chunk], centres) @ weights
    return out


def neighbourhood_log_density(x: torch.Tensor, centres: torch.Tensor, log_weights: torch.Tensor, kernel,
                              radius: float, entries: int = 1 << 21) -> torch.Tensor:
    """The mixture over the nodes near each point only: points are binned into square cells of side
    radius / 2, and a cell's points use every node within radius + half the cell's diagonal of its
    centre, so every node within ``radius`` of a point is used. The nodes left out are farther than
    ``radius``: together they add at most W exp(kernel.log_sup(radius)) to p(x), W the total weight.
    Summed in linear space (``kernel.value_at``): meant for points where log p is not tiny.

    Vectorised: each cell's node list is padded to the longest one with a node of weight 0."""
    x = x.double().cpu()
    side = radius / 2
    cells, owner = torch.unique(torch.floor(x / side), dim=0, return_inverse=True)
    near = torch.cdist((cells + 0.5) * side, centres) <= radius + side / math.sqrt(2)  # (cells, J)
    width = max(1, int(near.sum(1).max()))
    listed = torch.argsort((~near).to(torch.int8), dim=1, stable=True)[:, :width]  # near nodes first
    padding = torch.arange(width)[None] >= near.sum(1, keepdim=True)
    listed[padding] = centres.shape[0]  # the weightless node
    centres = torch.cat([centres, centres[:1]])
    weights = torch.cat([log_weights.exp(), torch.zeros(1, dtype=torch.float64)])
    out = torch.empty(x.shape[0], dtype=torch.float64)
    chunk = max(1, entries // width)
    for i in range(0, x.shape[0], chunk):
        nodes = listed[owner[i:i + chunk]]  # (m, width)
        out[i:i + chunk] = (kernel.value_at(x[i:i + chunk], centres[nodes]) * weights[nodes]).sum(1)
    return torch.log(out)


class NoisyCurveToy:
    """A toy made of curves plus noise: a point c(t) of a curve, plus optional uniform jitter on a
    square of half-width ``jitter`` (0: none), plus isotropic Gaussian noise of standard deviation
    ``sd``. The density is the curve integral of the noise kernel (Gaussian, or box-convolved
    Gaussian in closed form, :class:`BoxGaussianKernel`).

    The integral over the curve parameter uses panels of two noise standard deviations of arc
    length (8 Gauss-Legendre nodes each), summed in linear space over every node (Gaussian kernel)
    or over the nodes near each point (box kernel: :func:`neighbourhood_log_density`, with a
    radius beyond which the kernel is below e^-50, so the nodes left out change log p by less than
    e^-30 wherever log p > -20). Points where that gives log p < -20, far from the curve, where the
    kernel is narrower along the curve, are recomputed in log space with every node of panels of
    half a standard deviation. Absolute error of log p (against 24 nodes per standard deviation,
    tests/test_toy2d.py): below 1e-7 where log p > -50 and below 1e-5 relative everywhere.
    """

    FAR_LOG_DENSITY = -20.0
    NEGLIGIBLE_LOG_KERNEL = -50.0

    def __init__(self, curves: tuple, sd: float, jitter: float = 0.0):
        self.curves = curves
        self.sd = sd
        self.jitter = jitter
        self.kernel = BoxGaussianKernel(jitter, sd) if jitter > 0 else GaussianKernel(sd)
        self.radius = self._radius()

    def _radius(self) -> float:
        """The smallest distance (to 1e-6) beyond which the kernel stays below e^-50, by bisection."""
        lo, hi = 0.0, 100.0 * self.sd + 4 * self.jitter
        while hi - lo > 1e-6:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.kernel.log_sup(mid) > self.NEGLIGIBLE_LOG_KERNEL else (lo, mid)
        return hi

    @lru_cache(maxsize=None)
    def nodes(self, refine: float) -> tuple[torch.Tensor, torch.Tensor]:
        return curve_nodes(self.curves, self.sd, refine=refine)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double().cpu()
        if self.kernel.cull:
            out = neighbourhood_log_density(x, *self.nodes(0.5), self.kernel, self.radius)
        else:
            out = torch.log(mixture_density(x, *self.nodes(0.5), self.kernel))
        far = ~(out >= self.FAR_LOG_DENSITY)
        if far.any():
            out[far] = mixture_log_density(x[far], *self.nodes(2.0), self.kernel)
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_density(x)



def uniform(lo: float, hi: float):
    """The density of U[lo, hi] as a function of t."""
    return lambda t: np.full_like(t, 1.0 / (hi - lo))
