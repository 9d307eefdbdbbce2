"""2-D toy densities (the generators common in the flow literature, after FFJORD's ``toy_data``),
each with its true log-density and its entropy.

Every toy is drawn i.i.d. from numpy's ``default_rng`` with a fixed seed per split, so the splits are
identical on every machine and run. Where FFJORD's generator is not i.i.d. (scikit-learn's
``make_moons``/``make_circles`` place points on evenly spaced angles, pinwheel draws equal class
counts) the version here draws the curve parameter and the component at random; the noise is stated
for each toy below.

True log-densities
- checkerboard, 8gaussians: closed form.
- circles: closed form (a ring convolved with an isotropic Gaussian is a Bessel-I0 kernel).
- moons, swissroll: a curve c(t) with parameter density q(t), plus isotropic Gaussian noise:
  p(x) = integral q(t) N(x; c(t), s^2 I) dt. 2spirals (FFJORD's, with its uniform jitter): the
  same with the kernel N(0, s^2 I) convolved with the uniform jitter square, in closed form (a
  product of two differences of normal CDFs). The integral over t is computed by composite
  Gauss-Legendre quadrature on panels of equal arc length (8 nodes a panel), summed directly near
  the curve and in log space far from it; the absolute error of log p is below 1e-7 wherever
  log p > -50 (see :class:`NoisyCurveToy`).
- pinwheel: a change of variables of a 5-component Gaussian mixture, summed over every pre-image of
  a point (see :func:`pinwheel_log_density`).

Entropies: for each toy the differential entropy -int p log p in nats, by the 2-D midpoint rule on a
box that holds all but a negligible mass (:func:`grid_entropy`, settings in
:data:`ENTROPY_SETTINGS`). The stated error is the difference from the same rule at twice the
spacing plus the mass missing from the box times (1 + |H|). Computing them takes about a minute,
too long for ``python -m harness list``, so the results are stored in :data:`STORED_ENTROPIES`;
``python -m harness_plugins.datasets.toy2d`` recomputes and prints them, and ``tests/test_toy2d.py`` checks the
stored values against the coarse-grid recomputation and against Monte-Carlo estimates from the
generators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from harness import DataKind, DatasetSpec, Split, hookimpl
from harness.contracts import Splits

SPLIT_SIZES = {"train": 20000, "val": 5000, "test": 5000}
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}
LOG_2PI = math.log(2 * math.pi)


def _gaussian_norm(sd: float) -> float:
    """log of the normaliser of an isotropic 2-D Gaussian: log(2 pi sd^2)."""
    return math.log(2 * math.pi * sd * sd)


# ----------------------------------------------------------------------------- checkerboard
# Uniform on the 8 dark squares of a 4x4 board of side-2 cells covering [-4, 4]^2.

def checkerboard_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def checkerboard_log_density(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    inside = ((x >= -4) & (x < 4)).all(1)
    cells = torch.floor(x / 2)
    # The generator fills the cells whose integer coordinates have an even sum.
    dark = (cells[:, 0] + cells[:, 1]) % 2 == 0
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


# ----------------------------------------------------------------------------- curves + noise

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


def gaussian_mixture_log_density(x: torch.Tensor, centres: torch.Tensor, log_weights: torch.Tensor,
                                 sd: float) -> torch.Tensor:
    """log sum_j exp(lw_j) N(x; c_j, sd^2 I) for x (N, 2)."""
    return mixture_log_density(x, centres, log_weights, GaussianKernel(sd))


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


def _uniform(lo: float, hi: float):
    return lambda t: np.full_like(t, 1.0 / (hi - lo))


# moons: scikit-learn's two half circles (FFJORD: make_moons(noise=0.1) * 2 + (-1, -0.2)).
# t ~ U[0, pi]; upper moon 2(cos t, sin t) + (-1, -0.2), lower moon 2(1 - cos t, 0.5 - sin t) + (-1, -0.2),
# each with probability 1/2; noise N(0, 0.2^2 I).
MOONS_SD = 0.2


def _moon_upper(t):
    return np.stack([2 * np.cos(t) - 1, 2 * np.sin(t) - 0.2], 1)


def _moon_lower(t):
    return np.stack([1 - 2 * np.cos(t), 0.8 - 2 * np.sin(t)], 1)


MOONS = NoisyCurveToy((Curve(_moon_upper, 0.0, math.pi, _uniform(0, math.pi), 0.5),
                       Curve(_moon_lower, 0.0, math.pi, _uniform(0, math.pi), 0.5)), MOONS_SD)


def moons_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    t = rng.random(n) * math.pi
    lower = rng.integers(0, 2, n).astype(bool)
    pts = np.where(lower[:, None], _moon_lower(t), _moon_upper(t))
    return pts + rng.standard_normal((n, 2)) * MOONS_SD


# swissroll: scikit-learn's swiss roll, coordinates (x, z), divided by 5 (FFJORD: noise=1.0).
# t ~ U[1.5 pi, 4.5 pi]; point (t cos t, t sin t) / 5; noise N(0, 0.2^2 I).
SWISS_SD = 0.2
SWISS_T = (1.5 * math.pi, 4.5 * math.pi)


def _swiss(t):
    return np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5


SWISSROLL = NoisyCurveToy((Curve(_swiss, *SWISS_T, _uniform(*SWISS_T), 1.0),), SWISS_SD)


def swissroll_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    t = SWISS_T[0] + (SWISS_T[1] - SWISS_T[0]) * rng.random(n)
    return _swiss(t) + rng.standard_normal((n, 2)) * SWISS_SD


# 2spirals: FFJORD's two interleaved spirals (its toy_data generator). t = 3 pi sqrt(u), u ~ U[0,1)
# (density 2t/(3 pi)^2 on [0, 3 pi]); arm 1 is ((-t cos t, t sin t) + j) / 3 with jitter
# j ~ U[0, 1/2)^2, arm 2 its mirror image through the origin, jitter included; each arm with
# probability 1/2; then noise N(0, 0.1^2 I). After the division by 3 the jitter is uniform on a square
# of side 1/6, [0, 1/6)^2 on arm 1 and (-1/6, 0]^2 on arm 2. Its centre, (1/12, 1/12) on arm 1 and
# minus that on arm 2, is folded into the curve; the rest, uniform on [-1/12, 1/12)^2, is convolved
# with the noise in closed form (BoxGaussianKernel). Version 2: version 1 left the jitter out.
SPIRAL_SD = 0.1
SPIRAL_END = 3 * math.pi
SPIRAL_JITTER = 0.5  # side of the jitter square before the division by 3
SPIRAL_HALF_JITTER = SPIRAL_JITTER / 3 / 2  # half-width of the centred jitter square, final coordinates


def _spiral(t):
    return np.stack([-t * np.cos(t), t * np.sin(t)], 1) / 3


def _spiral_arm(t):
    """Arm 1 with the jitter square's centre added."""
    return _spiral(t) + SPIRAL_HALF_JITTER


def _spiral_density(t):
    return 2 * t / SPIRAL_END**2


TWO_SPIRALS = NoisyCurveToy((Curve(_spiral_arm, 0.0, SPIRAL_END, _spiral_density, 0.5),
                             Curve(lambda t: -_spiral_arm(t), 0.0, SPIRAL_END, _spiral_density, 0.5)),
                            SPIRAL_SD, jitter=SPIRAL_HALF_JITTER)


def two_spirals_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    t = SPIRAL_END * np.sqrt(rng.random(n))
    sign = 1.0 - 2.0 * rng.integers(0, 2, n)
    jitter = rng.random((n, 2)) * SPIRAL_JITTER / 3
    return sign[:, None] * (_spiral(t) + jitter) + rng.standard_normal((n, 2)) * SPIRAL_SD


# ----------------------------------------------------------------------------- circles
# Two concentric rings (FFJORD: make_circles(factor=0.5, noise=0.08) * 3): ring radius 3 or 1.5 with
# probability 1/2 each, angle ~ U[0, 2 pi), noise N(0, 0.24^2 I). A ring of radius R convolved with
# N(0, s^2 I) has density exp(-(rho^2 + R^2) / 2s^2) I0(R rho / s^2) / (2 pi s^2) at radius rho.
CIRCLE_RADII = (3.0, 1.5)
CIRCLE_SD = 0.24


def circles_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    radius = np.where(rng.integers(0, 2, n) == 1, CIRCLE_RADII[1], CIRCLE_RADII[0])
    angle = rng.random(n) * 2 * math.pi
    pts = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return pts + rng.standard_normal((n, 2)) * CIRCLE_SD


def circles_log_density(x: torch.Tensor) -> torch.Tensor:
    rho = x.double().norm(dim=1)
    s2 = CIRCLE_SD**2
    terms = []
    for radius in CIRCLE_RADII:
        z = radius * rho / s2
        # log I0(z) = log i0e(z) + z, so the exponent becomes -(rho - R)^2 / 2s^2.
        terms.append(math.log(0.5) - (rho - radius) ** 2 / (2 * s2) + torch.log(torch.special.i0e(z)))
    return torch.logsumexp(torch.stack(terms, 1), 1) - math.log(2 * math.pi * s2)


# ----------------------------------------------------------------------------- pinwheel
# FFJORD's pinwheel: class k ~ U{0..4}; f ~ N((1, 0), diag(0.3^2, 0.1^2)); angle
# phi = 2 pi k / 5 + 0.25 exp(f_0); y = 2 f R(phi) with R(phi) = [[cos, -sin], [sin, cos]], i.e. in
# complex notation y = 2 f exp(-i phi).
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


# ----------------------------------------------------------------------------- entropies

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


# Box half-widths (each at least 8 noise standard deviations past the support) and grid spacings.
ENTROPY_SETTINGS = {
    "8gaussians": (6.0, 0.05),
    "moons": (5.0, 0.05),
    "circles": (5.5, 0.05),
    "swissroll": (5.0, 0.05),
    "2spirals": (4.5, 0.05),
    "pinwheel": (8.0, 0.05),
}

LOG_DENSITIES = {
    "checkerboard": checkerboard_log_density,
    "8gaussians": eight_gaussians_log_density,
    "moons": MOONS,
    "circles": circles_log_density,
    "swissroll": SWISSROLL,
    "2spirals": TWO_SPIRALS,
    "pinwheel": pinwheel_log_density,
}


@lru_cache(maxsize=None)
def compute_entropy(name: str) -> tuple[float, float]:
    """(entropy in nats, error estimate) of a toy by 2-D quadrature; takes seconds."""
    if name == "checkerboard":
        return CHECKERBOARD_ENTROPY, 0.0
    half_width, spacing = ENTROPY_SETTINGS[name]
    return grid_entropy(LOG_DENSITIES[name], half_width, spacing)


# Output of compute_entropy for every toy (``python -m harness_plugins.datasets.toy2d`` prints these;
# tests/test_toy2d.py recomputes them). Values in nats: (entropy, error estimate).
STORED_ENTROPIES = {
    "checkerboard": (3.4657359027997265, 0.0),  # ln 32, exact
    "8gaussians": (2.831880406137666, 1e-12),
    "moons": (2.393879195961758, 7.752289419157936e-08),
    "circles": (3.2681357117082883, 4.3891610820094376e-08),
    "swissroll": (2.6696461739092303, 1.0690976759530219e-07),
    "2spirals": (2.6454502939391666, 7.323021047334066e-07),  # version 2, with FFJORD's jitter
    "pinwheel": (2.3177882669113123, 2.5613720986529163e-05),
}


# ----------------------------------------------------------------------------- registration

def _make_loader(sampler):
    def load(root=None) -> Splits:
        parts = {}
        for split, size in SPLIT_SIZES.items():
            rng = np.random.default_rng(SPLIT_SEEDS[split])
            parts[split] = Split(torch.as_tensor(sampler(size, rng), dtype=torch.float32))
        return Splits(**parts)

    return load


# name -> (sampler, log_density, extra tags, description)
TOYS = {
    "checkerboard": (checkerboard_sample, checkerboard_log_density, (),
                     "Uniform on the 8 dark cells of a 4x4 checkerboard on [-4,4]^2; entropy ln 32 (exact)."),
    "8gaussians": (eight_gaussians_sample, eight_gaussians_log_density, ("modes:8",),
                   "Equal mixture of 8 Gaussians (sd 0.354) on a circle of radius 2.83; closed-form density, "
                   "entropy by quadrature."),
    "moons": (moons_sample, MOONS,
              (), "Two half circles of radius 2 (t ~ U[0, pi]) plus N(0, 0.2^2 I) noise; density by "
                  "Gauss-Legendre quadrature over t, entropy by 2-D quadrature."),
    "circles": (circles_sample, circles_log_density,
                (), "Rings of radius 3 and 1.5 (prob. 1/2 each, uniform angle) plus N(0, 0.24^2 I) noise; "
                    "closed-form (Bessel I0) density, entropy by 2-D quadrature."),
    "swissroll": (swissroll_sample, SWISSROLL,
                  (), "Swiss roll (t cos t, t sin t)/5, t ~ U[1.5 pi, 4.5 pi], plus N(0, 0.2^2 I) noise; density "
                      "by Gauss-Legendre quadrature over t, entropy by 2-D quadrature."),
    "2spirals": (two_spirals_sample, TWO_SPIRALS,
                 (), "FFJORD's two mirrored spirals ((-t cos t, t sin t) + U[0, 0.5)^2 jitter)/3, t = 3 pi sqrt(u), "
                     "plus N(0, 0.1^2 I) noise; density by quadrature over t of the jitter-convolved noise (closed "
                     "form), entropy by 2-D quadrature. Version 2 (version 1 had no jitter)."),
    "pinwheel": (pinwheel_sample, pinwheel_log_density,
                 (), "FFJORD pinwheel: 5 arms, radial sd 0.3, tangential sd 0.1, rate 0.25, scale 2; density by "
                     "change of variables summed over all pre-images, entropy by 2-D quadrature."),
}


# A toy's version is part of its provenance hash: bumped whenever what it generates changes, so results
# of the old and the new distribution never compare silently. 2spirals 2: FFJORD's uniform jitter.
VERSIONS = {"2spirals": "2"}


@hookimpl
def harness_register_datasets(register):
    for name, (sampler, log_density, tags, description) in TOYS.items():
        entropy, error = STORED_ENTROPIES.get(name, (None, 0.0))
        register(DatasetSpec(
            name=name, kind=DataKind.CONTINUOUS, event_shape=(2,), load=_make_loader(sampler),
            log_density=log_density, entropy=entropy, entropy_stderr=error,
            feature_extractor="raw", tags=("toy2d",) + tuple(tags), description=description,
            version=VERSIONS.get(name, "1"),
        ))


if __name__ == "__main__":  # recompute the stored entropies
    import time

    for toy in TOYS:
        start = time.perf_counter()
        value, err = compute_entropy(toy)
        print(f"    {toy!r}: ({value!r}, {err!r}),  # {time.perf_counter() - start:.1f} s")
