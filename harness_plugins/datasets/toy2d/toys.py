"""The seven 2-D toys: one Toy declaration each, with its sampler and true log-density.

The toys are the generators common in the flow literature, after FFJORD's ``toy_data``, each a
:class:`~harness_plugins.datasets.toy2d.toy.Toy` in :data:`TOYS`.

Where FFJORD's generator is not i.i.d. (scikit-learn's ``make_moons``/``make_circles`` place points on
evenly spaced angles, pinwheel draws equal class counts) the version here draws the curve parameter
and the component at random; the noise is stated for each toy below. True log-densities:
checkerboard, 8gaussians and circles in closed form (a ring convolved with an isotropic Gaussian is a
Bessel-I0 kernel); moons, swissroll and 2spirals by quadrature over their curves
(:mod:`~harness_plugins.datasets.toy2d.curves`; for 2spirals of FFJORD's uniform jitter convolved with
the noise, in closed form); pinwheel by a change of variables
(:mod:`~harness_plugins.datasets.toy2d.pinwheel`). Each stored entropy is the output of
:func:`~harness_plugins.datasets.toy2d.entropy.compute_entropy` (``python -m
harness_plugins.datasets.toy2d`` prints them; tests/test_toy2d.py recomputes them).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from harness_plugins.datasets.toy2d.curves import Curve, NoisyCurveToy, uniform
from harness_plugins.datasets.toy2d.pinwheel import pinwheel_log_density, pinwheel_sample
from harness_plugins.datasets.toy2d.toy import Toy

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


# ----------------------------------------------------------------------------- noisy curves

# moons: scikit-learn's two half circles (FFJORD: make_moons(noise=0.1) * 2 + (-1, -0.2)).
# t ~ U[0, pi]; upper moon 2(cos t, sin t) + (-1, -0.2), lower moon 2(1 - cos t, 0.5 - sin t) + (-1, -0.2),
# each with probability 1/2; noise N(0, 0.2^2 I).
MOONS_SD = 0.2


def _moon_upper(t):
    return np.stack([2 * np.cos(t) - 1, 2 * np.sin(t) - 0.2], 1)


def _moon_lower(t):
    return np.stack([1 - 2 * np.cos(t), 0.8 - 2 * np.sin(t)], 1)


MOONS = NoisyCurveToy((Curve(_moon_upper, 0.0, math.pi, uniform(0, math.pi), 0.5),
                       Curve(_moon_lower, 0.0, math.pi, uniform(0, math.pi), 0.5)), MOONS_SD)


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


SWISSROLL = NoisyCurveToy((Curve(_swiss, *SWISS_T, uniform(*SWISS_T), 1.0),), SWISS_SD)


def swissroll_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    t = SWISS_T[0] + (SWISS_T[1] - SWISS_T[0]) * rng.random(n)
    return _swiss(t) + rng.standard_normal((n, 2)) * SWISS_SD


# 2spirals: FFJORD's two interleaved spirals (its toy_data generator). t = 3 pi sqrt(u), u ~ U[0,1)
# (density 2t/(3 pi)^2 on [0, 3 pi]); arm 1 is ((-t cos t, t sin t) + j) / 3 with jitter
# j ~ U[0, 1/2)^2, arm 2 its mirror image through the origin, jitter included; each arm with
# probability 1/2; then noise N(0, 0.1^2 I). After the division by 3 the jitter is uniform on a square
# of side 1/6, [0, 1/6)^2 on arm 1 and (-1/6, 0]^2 on arm 2. Its centre, (1/12, 1/12) on arm 1 and
# minus that on arm 2, is folded into the curve; the rest, uniform on [-1/12, 1/12)^2, is convolved
# with the noise in closed form (BoxGaussianKernel).
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


# ----------------------------------------------------------------------------- the declarations

TOYS = (
    # uniform on an area of 32: the entropy is exact
    Toy("checkerboard", checkerboard_sample, checkerboard_log_density, entropy=math.log(32.0), entropy_error=0.0,
        description="Uniform on the 8 dark cells of a 4x4 checkerboard on [-4,4]^2; entropy ln 32 (exact)."),
    Toy("8gaussians", eight_gaussians_sample, eight_gaussians_log_density, entropy=2.831880406137666,
        entropy_error=1e-12, quadrature=(6.0, 0.05), tags=("modes:8",),
        description="Equal mixture of 8 Gaussians (sd 0.354) on a circle of radius 2.83; closed-form density, "
                    "entropy by quadrature."),
    Toy("moons", moons_sample, MOONS, entropy=2.393879195961758, entropy_error=7.752289419157936e-08,
        quadrature=(5.0, 0.05),
        description="Two half circles of radius 2 (t ~ U[0, pi]) plus N(0, 0.2^2 I) noise; density by "
                    "Gauss-Legendre quadrature over t, entropy by 2-D quadrature."),
    Toy("circles", circles_sample, circles_log_density, entropy=3.2681357117082883,
        entropy_error=4.3891610820094376e-08, quadrature=(5.5, 0.05),
        description="Rings of radius 3 and 1.5 (prob. 1/2 each, uniform angle) plus N(0, 0.24^2 I) noise; "
                    "closed-form (Bessel I0) density, entropy by 2-D quadrature."),
    Toy("swissroll", swissroll_sample, SWISSROLL, entropy=2.6696461739092303, entropy_error=1.0690976759530219e-07,
        quadrature=(5.0, 0.05),
        description="Swiss roll (t cos t, t sin t)/5, t ~ U[1.5 pi, 4.5 pi], plus N(0, 0.2^2 I) noise; density "
                    "by Gauss-Legendre quadrature over t, entropy by 2-D quadrature."),
    # version 2: FFJORD's uniform jitter is part of the distribution
    Toy("2spirals", two_spirals_sample, TWO_SPIRALS, entropy=2.6454502939391666, entropy_error=7.323021047334066e-07,
        quadrature=(4.5, 0.05), version="2",
        description="FFJORD's two mirrored spirals ((-t cos t, t sin t) + U[0, 0.5)^2 jitter)/3, t = 3 pi sqrt(u), "
                    "plus N(0, 0.1^2 I) noise; density by quadrature over t of the jitter-convolved noise (closed "
                    "form), entropy by 2-D quadrature. Version 2 (version 1 had no jitter)."),
    Toy("pinwheel", pinwheel_sample, pinwheel_log_density, entropy=2.3177882669113123,
        entropy_error=2.5613720986529163e-05, quadrature=(8.0, 0.05),
        description="FFJORD pinwheel: 5 arms, radial sd 0.3, tangential sd 0.1, rate 0.25, scale 2; density by "
                    "change of variables summed over all pre-images, entropy by 2-D quadrature."),
)
