"""2-D toys: true densities normalise, entropies agree with Monte-Carlo estimates from the generators,
the stored entropies are what the quadrature gives, splits are fixed."""

import math
import time

import numpy as np
import pytest
import torch

import harness_plugins.datasets.toy2d as toy2d
from harness.data import provenance_hash
from harness_plugins.datasets.toy2d import curves, entropy, pinwheel, toys

TOYS = ["checkerboard", "8gaussians", "moons", "circles", "swissroll", "2spirals", "pinwheel"]
TOY = {toy.name: toy for toy in toys.TOYS}


def registered() -> dict:
    specs = {}
    toy2d.harness_register_datasets(register=lambda spec: specs.__setitem__(spec.name, spec))
    return specs


SPECS = registered()


def test_every_toy_is_registered_fast_with_its_declarations():
    start = time.perf_counter()
    for _ in range(10):
        registered()
    assert (time.perf_counter() - start) / 10 < 0.5
    assert sorted(SPECS) == sorted(TOYS)
    for spec in SPECS.values():
        assert spec.kind.value == "continuous" and spec.event_shape == (2,)
        assert "toy2d" in spec.tags and spec.feature_extractor == "raw"
        assert spec.log_density is not None and spec.entropy is not None
    assert "modes:8" in SPECS["8gaussians"].tags


def test_each_toy_is_declared_once_and_the_registry_holds_exactly_the_declarations(host):
    """The datasets tagged toy2d in the installed registry are the Toy declarations, in their order,
    each registered from its declaration alone (entropy, version, tags); no model plugin holds a copy
    of the toys' names (a model that runs on every toy selects them by tag)."""
    from pathlib import Path

    assert [toy.name for toy in toys.TOYS] == TOYS  # one declaration each, in the order models get them
    tagged = [name for name, spec in host.registry.datasets.items() if "toy2d" in spec.tags]
    assert tagged == TOYS
    for toy in toys.TOYS:
        spec = host.registry.datasets[toy.name]
        assert (spec.entropy, spec.entropy_stderr, spec.version) == (toy.entropy, toy.entropy_error, toy.version)
        assert spec.tags == ("toy2d", *toy.tags) and spec.log_density is toy.log_density
        assert host.owner("datasets", toy.name) == "toy2d"
    models = Path(toy2d.__file__).resolve().parents[2] / "harness_plugins" / "models"
    for path in models.rglob("*.py"):
        text = path.read_text()
        assert not all(f'"{name}"' in text for name in TOYS), path


@pytest.mark.parametrize("name", TOYS)
def test_entropy_agrees_with_monte_carlo_from_the_generator(name):
    """-mean log p over 200k fresh generator draws estimates the entropy independently of the
    quadrature (a wrong but normalised density would give H + KL > H)."""
    sampler = TOY[name].sample
    spec = SPECS[name]
    x = torch.as_tensor(sampler(200_000, np.random.default_rng(12345)))
    log_p = spec.log_density(x)
    assert torch.isfinite(log_p).all()
    mc = float(-log_p.mean())
    se = float(log_p.std()) / math.sqrt(len(log_p))
    tolerance = max(0.01, 3 * math.hypot(se, spec.entropy_stderr))
    assert abs(mc - spec.entropy) <= tolerance, (mc, se, spec.entropy)


@pytest.mark.parametrize("name", [t for t in TOYS if t != "checkerboard"])
def test_density_integrates_to_one_and_stored_entropy_is_the_quadrature(name):
    """On the coarser of the two grids behind the stored value: the mass is 1 and the entropy differs
    from the stored one by no more than the stored error estimate (which is that difference)."""
    half_width, spacing = TOY[name].quadrature
    mass, value = entropy.grid_moments(SPECS[name].log_density, half_width, 2 * spacing)
    assert abs(mass - 1) < 1e-2
    assert abs(mass - 1) < 1e-4  # in fact far tighter than the required 1e-2
    assert abs(value - TOY[name].entropy) <= TOY[name].entropy_error * (1 + 1e-9) + 1e-12


def test_checkerboard_density_integrates_to_one_and_is_uniform_on_its_samples():
    mass, value = entropy.grid_moments(toys.checkerboard_log_density, 5.0, 0.05)
    assert mass == pytest.approx(1.0, abs=1e-9)
    assert value == pytest.approx(math.log(32), abs=1e-9)
    x = torch.as_tensor(toys.checkerboard_sample(10_000, np.random.default_rng(0)))
    assert torch.all(toys.checkerboard_log_density(x) == -math.log(32))


def test_circles_bessel_closed_form_matches_quadrature_over_the_angle():
    """The Bessel-I0 formula against a direct quadrature over the ring angle (independent route)."""
    rings = tuple(
        curves.Curve(lambda t, R=radius: R * np.stack([np.cos(t), np.sin(t)], 1), 0.0, 2 * math.pi,
                    lambda t: np.full_like(t, 1 / (2 * math.pi)), 0.5)
        for radius in toys.CIRCLE_RADII
    )
    direct = curves.NoisyCurveToy(rings, toys.CIRCLE_SD)
    x = torch.as_tensor(np.random.default_rng(1).uniform(-5, 5, (2000, 2)))
    assert torch.allclose(toys.circles_log_density(x), direct(x), atol=1e-7)


@pytest.mark.parametrize("toy", [toys.MOONS, toys.SWISSROLL, toys.TWO_SPIRALS])
def test_curve_quadrature_matches_a_much_finer_rule(toy):
    x = torch.cat([torch.as_tensor(np.random.default_rng(2).uniform(-4, 4, (1500, 2))),
                   torch.as_tensor(np.random.default_rng(3).normal(0, 0.5, (500, 2)))])
    centres, log_weights = curves.curve_nodes(toy.curves, toy.sd, refine=6, order=10)
    reference = curves.mixture_log_density(x, centres, log_weights, toy.kernel)
    value = toy(x)
    near = reference > -50
    assert (value - reference)[near].abs().max() < 1e-7
    assert ((value - reference).abs() / reference.abs().clamp_min(1)).max() < 1e-5


def ffjord_two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD's 2spirals recipe (lib/toy_data.py), written here from its definition: n/2 draws per arm,
    angle sqrt(u) * 540 degrees in radians, jitter U[0, 0.5) per coordinate before the division by 3,
    the second arm the negation of the first (jitter included), then N(0, 0.1^2) noise."""
    half = n // 2
    t = np.sqrt(rng.random((half, 1))) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(t) * t + rng.random((half, 1)) * 0.5
    d1y = np.sin(t) * t + rng.random((half, 1)) * 0.5
    x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    return x + rng.standard_normal(x.shape) * 0.1


def test_two_spirals_is_ffjords_distribution():
    """Points from FFJORD's recipe score the stored entropy under the true log-density: their
    cross-entropy equals the entropy only if the two distributions agree (the version without the
    jitter is ~0.4 nats of KL away, far outside 3 standard errors of 50k draws)."""
    x = torch.as_tensor(ffjord_two_spirals(50_000, np.random.default_rng(7)))
    log_p = toys.TWO_SPIRALS(x)
    cross = float(-log_p.mean())
    se = float(log_p.std()) / math.sqrt(len(log_p))
    entropy = SPECS["2spirals"].entropy
    assert abs(cross - entropy) <= 3 * math.hypot(se, SPECS["2spirals"].entropy_stderr), (cross, se, entropy)
    jitterless = curves.NoisyCurveToy(tuple(curves.Curve(lambda t, s=s: s * toys._spiral(t), 0.0, toys.SPIRAL_END,
                                                       toys._spiral_density, 0.5) for s in (1.0, -1.0)),
                                     toys.SPIRAL_SD)
    assert float(-jitterless(x).mean()) - cross > 0.2  # the old density misses the data by far more


def test_two_spirals_jitter_convolution_matches_quadrature_over_the_jitter():
    """The closed form (differences of normal CDFs) against Gaussian kernels summed over an 8 x 8
    Gauss-Legendre rule on the jitter square: an independent route to the same integral."""
    u, v = np.polynomial.legendre.leggauss(8)
    half = toys.SPIRAL_HALF_JITTER
    offsets = np.array([(a, b) for a in u for b in u]) * half
    log_w = np.log(np.array([wa * wb for wa in v for wb in v]) / 4)
    centres, log_weights = curves.curve_nodes(toys.TWO_SPIRALS.curves, toys.SPIRAL_SD, refine=0.5)
    jittered = (centres[:, None, :] + torch.as_tensor(offsets)[None]).reshape(-1, 2)
    jittered_w = (log_weights[:, None] + torch.as_tensor(log_w)[None]).reshape(-1)
    rng = np.random.default_rng(5)
    x = torch.cat([torch.as_tensor(ffjord_two_spirals(200, rng)), torch.as_tensor(rng.uniform(-4, 4, (100, 2)))])
    reference = curves.mixture_log_density(x, jittered, jittered_w, curves.GaussianKernel(toys.SPIRAL_SD))
    value = toys.TWO_SPIRALS(x)
    near = reference > -20  # where panels of two standard deviations suffice for the reference too
    assert near.sum() > 220
    assert (value - reference)[near].abs().max() < 1e-6


def test_two_spirals_version_bumped_so_old_results_do_not_compare():
    assert SPECS["2spirals"].version == "2"
    assert all(SPECS[name].version == "1" for name in TOYS if name != "2spirals")
    splits = SPECS["2spirals"].load(None)
    assert provenance_hash(splits, "2spirals:2") != provenance_hash(splits, "2spirals:1")


def test_datasets_json_gives_the_new_two_spirals_entropy_matching_its_sampler(capsys):
    """`datasets 2spirals --format json` shows the version-2 entropy, and a Monte-Carlo estimate from
    the dataset's own sampler (100k fresh draws) lies within 3 standard errors of it."""
    import json

    from harness.cli import main

    assert main(["datasets", "2spirals", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["name"] == "2spirals" and row["version"] == "2"
    assert row["entropy"] == pytest.approx(2.64545, abs=1e-5)
    x = torch.as_tensor(toys.two_spirals_sample(100_000, np.random.default_rng(2024)))
    log_p = toys.TWO_SPIRALS(x)
    se = math.hypot(float(log_p.std()) / math.sqrt(len(log_p)), row["entropy_stderr"])
    assert abs(float(-log_p.mean()) - row["entropy"]) <= 3 * se


def test_pinwheel_density_matches_brute_force_root_scan():
    """Points near fold caustics included: every pre-image found by a 2^18-angle scan."""
    rng = np.random.default_rng(4)
    n = 30
    k = rng.integers(0, 5, n)
    f = rng.standard_normal((n, 2)) * np.array([0.9, 0.4]) + np.array([1.0, 0.0])  # wide: reaches the folds
    phi = 2 * math.pi * k / 5 + 0.25 * np.exp(f[:, 0])
    c, s = np.cos(phi), np.sin(phi)
    y = torch.as_tensor(2 * np.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], 1))
    value = pinwheel.pinwheel_log_density(y)
    r, beta = y.norm(dim=1) / 2, torch.atan2(y[:, 1], y[:, 0])
    alpha = torch.linspace(0, 2 * math.pi, 2**18 + 1, dtype=torch.float64)
    for i in range(n):
        h, _ = pinwheel._pinwheel_phase(r[i], alpha)
        terms = []
        for cls in range(5):
            d = pinwheel._wrap(h - beta[i] - 2 * math.pi * cls / 5)
            lo, hi = d[:-1], d[1:]
            for j in (((lo < 0) != (hi < 0)) & ((hi - lo).abs() < math.pi)).nonzero().flatten():
                a = alpha[j] + (alpha[j + 1] - alpha[j]) * lo[j] / (lo[j] - hi[j])
                _, slope = pinwheel._pinwheel_phase(r[i], a)
                terms.append(pinwheel._pinwheel_feature_log_density(r[i] * torch.cos(a), r[i] * torch.sin(a))
                             - torch.log(slope.abs()) - math.log(20))
        brute = torch.logsumexp(torch.stack(terms), 0)
        assert float(value[i]) == pytest.approx(float(brute), abs=1e-3), i


def test_splits_are_fixed_and_the_original_toys_keep_their_provenance():
    for name in TOYS:
        a, b = SPECS[name].load(None), SPECS[name].load(None)
        assert [len(a.train), len(a.val), len(a.test)] == [20000, 5000, 5000]
        assert a.train.x.dtype == torch.float32 and a.train.y is None
        assert provenance_hash(a) == provenance_hash(b)
    # Values from before the catalog was extended: the generators and seeds did not change.
    assert provenance_hash(SPECS["checkerboard"].load(None), "checkerboard:1") == PINNED["checkerboard"]
    assert provenance_hash(SPECS["8gaussians"].load(None), "8gaussians:1") == PINNED["8gaussians"]


PINNED = {
    "checkerboard": "55e13f1fba6474e99ec71dac577fe4e78f0655b66924603943da5d3c44299182",
    "8gaussians": "11e21dbc799e65ccd29512084835a7ac38f9073b0e3f0038552b1dbb180d1940",
}
