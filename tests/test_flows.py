"""Tests of the normalising-flow family (planar, NICE, RealNVP, Glow, MAF, spline) against independent references.

- The density of a 2-D flow integrates to one on a fine grid (the reference is the number 1).
- Samples follow that density: binned samples against grid-integrated bin probabilities (chi-square).
- Every flow is invertible: f^-1(f(z)) = z and f(f^-1(x)) = x to 1e-4 in float32, on 2-D vectors and
  on a tiny 1x4x4 image for the image flows.
- The log-determinant each flow reports equals slogdet of the Jacobian that
  torch.autograd.functional.jacobian computes, in both directions.
- The rational-quadratic spline: its derivative equals central finite differences of its values, its
  inverse undoes it, it is monotone with the identity outside [-B, B] (value and slope continuous at
  the ends), and its knots and derivatives follow the parametrisation (identity at zero parameters).
- Structural checks: MADE's autoregressive masks (zero upper triangle of dz/dx in the MAF order),
  actnorm's data-dependent initialisation (numpy mean / std), the planar root-finder (against
  scipy's brentq), discrete samples (quantised levels of the pushed-forward base draws).

Every parameter is perturbed away from its (often identity) initialisation before the invertibility
and Jacobian checks, so no layer passes by being the identity.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import chisquare

from harness import DataKind, DatasetSpec, FitContext, LikelihoodKind, Split
from harness_plugins.models import flows
from harness_plugins.models.flows.glow import ActNorm, data_dependent_init
from harness_plugins.models.flows.maf import MAFLayer
from harness_plugins.models.flows.planar import PlanarFlow, solve_planar_preactivation
from harness_plugins.models.flows.spline import rational_quadratic_spline, spline_parameters

torch.set_num_threads(1)

MODELS = ("planar", "nice", "realnvp", "glow", "maf", "spline")
IMAGE_MODELS = ("nice", "realnvp", "glow", "maf")

TINY = {
    "planar": {"layers": 8},
    "nice": {"couplings": 4, "hidden": 16, "depth": 2},
    "realnvp": {"couplings": 2, "hidden": 16, "depth": 1, "channels": 8, "scales": 2},
    "glow": {"steps_per_scale": 2, "hidden": 16, "depth": 1, "channels": 8, "scales": 2},
    "maf": {"layers": 3, "hidden": 16, "depth": 2},
    "spline": {"couplings": 4, "hidden": 16, "depth": 2, "bins": 8},
}
TRAIN = {"steps": 40, "lr": 1e-2, "batch_size": 128, "warmup": 1, "val_every": 40, "val_examples": 500}


def registered_specs() -> dict:
    specs = {}
    flows.harness_register_models(register=lambda spec: specs.__setitem__(spec.name, spec))
    return specs


SPECS = registered_specs()


def hparams(name: str, **overrides) -> dict:
    """The model's declared base values with ``overrides`` (each checked against the declaration)."""
    declared = SPECS[name].hyperparameters
    return {**declared.defaults, **{k: declared.check(k, v) for k, v in overrides.items()}}

TOY = DatasetSpec(name="tiny-2d", kind=DataKind.CONTINUOUS, event_shape=(2,), load=lambda root: None)
IMAGE = DatasetSpec(name="tiny-image", kind=DataKind.DISCRETE, event_shape=(1, 4, 4), levels=5,
                    load=lambda root: None)


def toy_data(n: int, seed: int) -> torch.Tensor:
    """Two tilted Gaussian blobs at (+-2, +-1): clearly non-Gaussian, all mass well inside [-8, 8]^2."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n) * 2 - 1
    x = np.stack([2.0 * side, 1.0 * side], 1) + rng.standard_normal((n, 2)) @ np.array([[0.5, 0.2], [0.0, 0.4]])
    return torch.as_tensor(x, dtype=torch.float32)


def image_data(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    ramp = np.arange(16).reshape(1, 4, 4) % 5
    x = np.where(rng.random((n, 1, 4, 4)) < 0.7, ramp, rng.integers(0, 5, (n, 1, 4, 4)))
    return torch.as_tensor(x, dtype=torch.float32)


def fitted(name: str, spec: DatasetSpec, data: torch.Tensor):
    model = SPECS[name].factory(spec, hparams(name, **TINY[name], **TRAIN))
    model.to("cpu")
    ctx = FitContext(seed=0)
    model.fit(Split(data[200:]), Split(data[:200]), ctx)
    assert ctx.steps == ctx.total_steps == TRAIN["steps"]
    return model


@pytest.fixture(scope="module")
def toy_models():
    data = toy_data(2000, seed=1)
    return {name: fitted(name, TOY, data) for name in MODELS}


@pytest.fixture(scope="module")
def image_models():
    data = image_data(600, seed=2)
    return {name: fitted(name, IMAGE, data) for name in IMAGE_MODELS}


def perturbed(flow: torch.nn.Module, dtype=torch.float32, scale: float = 0.2, seed: int = 0):
    """A copy of ``flow`` with every parameter moved by N(0, scale^2) noise."""
    flow = copy.deepcopy(flow).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return flow.eval()


GRID_HALF_WIDTH, GRID_POINTS = 8.0, 400


def grid():
    """Midpoints of a 400x400 grid on [-8, 8]^2 and the cell area."""
    h = 2 * GRID_HALF_WIDTH / GRID_POINTS
    g = -GRID_HALF_WIDTH + h * (torch.arange(GRID_POINTS, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).float(), h * h


# ------------------------------------------------------------------------------------ densities


@pytest.mark.parametrize("name", MODELS)
def test_density_integrates_to_one(toy_models, name):
    model = toy_models[name]
    points, cell = grid()
    ll = model.log_likelihood(points)
    assert ll.kind is LikelihoodKind.EXACT
    total = float(ll.values.double().exp().sum() * cell)
    assert abs(total - 1.0) < 1e-2, f"{name}: density integrates to {total}"


@pytest.mark.parametrize("name", MODELS)
def test_samples_follow_density(toy_models, name):
    """Chi-square of binned samples against the bin masses of exp(log p) on the grid."""
    model = toy_models[name]
    # Bin edges on grid-cell boundaries (multiples of the 0.04 spacing), so each cell lies in one bin.
    edges_x, edges_y = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]), np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    n_bins = (len(edges_x) + 1) * (len(edges_y) + 1)

    def bin_index(p: np.ndarray) -> np.ndarray:
        return np.digitize(p[:, 0], edges_x) * (len(edges_y) + 1) + np.digitize(p[:, 1], edges_y)

    points, cell = grid()
    density = model.log_likelihood(points).values.double().exp().numpy()
    mass = np.bincount(bin_index(points.numpy()), weights=density * cell, minlength=n_bins)
    n = 20000
    samples = model.sample(n, torch.Generator().manual_seed(7))
    assert samples.shape == (n, 2) and samples.dtype == torch.float32
    observed = np.bincount(bin_index(samples.numpy()), minlength=n_bins)
    expected = mass / mass.sum() * n
    sparse = expected < 20  # pooled into one bin, which joins the smallest other bin if still small
    obs = np.append(observed[~sparse], observed[sparse].sum())
    exp = np.append(expected[~sparse], expected[sparse].sum())
    if exp[-1] < 5:
        smallest = np.argmin(exp[:-1])
        obs[smallest] += obs[-1]
        exp[smallest] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    p_value = chisquare(obs, exp).pvalue
    assert p_value > 1e-3, f"{name}: samples disagree with the density (p = {p_value:.2e})"


# ------------------------------------------------------------------------------------ invertibility


def _round_trips(flow, x, z):
    with torch.no_grad():
        z_of_x, _ = flow(x)
        x_back = flow.inverse(z_of_x)
        x_of_z = flow.inverse(z)
        z_back, _ = flow(x_of_z)
    return float((x_back - x).abs().max()), float((z_back - z).abs().max())


@pytest.mark.parametrize("name", MODELS)
def test_inverse_round_trips_2d(toy_models, name):
    flow = perturbed(toy_models[name].flow)
    gen = torch.Generator().manual_seed(3)
    x_err, z_err = _round_trips(flow, toy_data(500, seed=5), torch.randn(500, 2, generator=gen))
    assert x_err < 1e-4 and z_err < 1e-4, (x_err, z_err)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_inverse_round_trips_image(image_models, name):
    flow = perturbed(image_models[name].flow, scale=0.1)
    gen = torch.Generator().manual_seed(4)
    x = (image_data(200, seed=6) + torch.rand(200, 1, 4, 4, generator=gen)) / IMAGE.levels
    x_err, z_err = _round_trips(flow, x, torch.randn(200, 1, 4, 4, generator=gen))
    assert x_err < 1e-4 and z_err < 1e-4, (x_err, z_err)


# ------------------------------------------------------------------------------------ Jacobians


def _check_log_det(flow, x: torch.Tensor):
    """log|det dz/dx| from the flow against slogdet of autograd Jacobians of both directions."""
    shape = x.shape

    def forward(v):
        return flow(v.reshape(shape))[0].reshape(-1)

    def inverse(v):
        return flow.inverse(v.reshape(shape)).reshape(-1)

    z, log_det = flow(x)
    z, log_det = z.detach(), log_det.detach()
    sign_f, autograd_forward = torch.linalg.slogdet(torch.autograd.functional.jacobian(forward, x.reshape(-1)))
    sign_i, autograd_inverse = torch.linalg.slogdet(torch.autograd.functional.jacobian(inverse, z.reshape(-1)))
    tol = 1e-7 * max(1.0, abs(float(log_det)))
    assert sign_f != 0 and sign_i != 0
    assert abs(float(log_det) - float(autograd_forward)) < tol, (float(log_det), float(autograd_forward))
    assert abs(float(log_det) + float(autograd_inverse)) < tol, (float(log_det), -float(autograd_inverse))


@pytest.mark.parametrize("name", MODELS)
def test_log_det_matches_autograd_2d(toy_models, name):
    flow = perturbed(toy_models[name].flow, dtype=torch.float64)
    for x in toy_data(3, seed=8).double():
        _check_log_det(flow, x[None])


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_log_det_matches_autograd_image(image_models, name):
    flow = perturbed(image_models[name].flow, dtype=torch.float64, scale=0.1)
    gen = torch.Generator().manual_seed(9)
    noise = torch.rand(1, 1, 4, 4, generator=gen, dtype=torch.float64)
    x = (image_data(1, seed=10).double() + noise) / IMAGE.levels
    _check_log_det(flow, x)


# ------------------------------------------------------------------------------------ sampling


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_discrete_samples_are_quantised_pushforwards(image_models, name):
    model = image_models[name]
    samples = model.sample(64, torch.Generator().manual_seed(11))
    assert samples.shape == (64, 1, 4, 4) and samples.dtype == torch.float32
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= IMAGE.levels - 1
    z = torch.randn((64, 1, 4, 4), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        y = model.flow.inverse(z)
    expected = torch.clamp(torch.floor(y * IMAGE.levels), 0, IMAGE.levels - 1)
    assert torch.equal(samples, expected)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_discrete_likelihood_is_the_dequantisation_bound(image_models, name):
    model = image_models[name]
    x = image_data(50, seed=12)
    ll = model.log_likelihood(x)
    assert ll.kind is LikelihoodKind.BOUND and ll.details.get("dequantized")
    # Reference: the same dequantisation draw pushed through the flow by hand.
    gen = torch.Generator().manual_seed(12345)
    y = (x + torch.rand(x.shape, generator=gen)) / IMAGE.levels
    with torch.no_grad():
        z, log_det = model.flow(y)
    log_normal = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).reshape(50, -1).sum(1)
    reference = log_normal + log_det - 16 * math.log(IMAGE.levels)
    assert torch.allclose(ll.values, reference.float(), atol=1e-4)


# ------------------------------------------------------------------------------------ components


def test_made_is_autoregressive_in_alternating_orders():
    for reverse in (False, True):
        torch.manual_seed(0)
        layer = perturbed(MAFLayer(5, hidden=12, depth=2, reverse=reverse), dtype=torch.float64, scale=0.5)
        x = torch.randn(5, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x)
        order = [4, 3, 2, 1, 0] if reverse else [0, 1, 2, 3, 4]
        permuted = jac[order][:, order]  # rows/cols in the order the dimensions are generated
        assert torch.all(permuted.triu(1) == 0)
        assert torch.all(permuted.tril(-1).abs().sum() > 0)


def test_actnorm_data_dependent_init_standardises_its_input():
    torch.manual_seed(0)
    layer = ActNorm(3, image=True)
    x = torch.randn(64, 3, 4, 4) * torch.tensor([0.5, 2.0, 3.0]).reshape(1, 3, 1, 1) + 1.5
    data_dependent_init(layer, x)
    z, _ = layer(x)
    z = z.detach().double().numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(z.mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(1), 1.0, atol=1e-4)


def test_planar_root_finder_matches_brentq():
    rng = np.random.default_rng(0)
    for c in (-0.999, -0.5, 0.0, 0.3, 5.0):
        y = rng.normal(0, 3, 50)
        roots = solve_planar_preactivation(c, y)
        reference = np.array([brentq(lambda a, t=t: a + c * np.tanh(a) - t, t - abs(c) - 1, t + abs(c) + 1,
                                     xtol=1e-14) for t in y])
        np.testing.assert_allclose(roots, reference, atol=1e-8)


def test_planar_u_hat_keeps_layers_invertible():
    torch.manual_seed(0)
    flow = PlanarFlow(2, 64)
    with torch.no_grad():
        flow.u.copy_(-5 * flow.w)  # w.u << -1: the layers would fold without the reparametrisation
        w_dot_u_hat = (flow.w * flow.u_hat()).sum(1)
        # Points on a layer's hyperplane (tanh' = 1) are where its Jacobian 1 + w.u_hat tanh' is smallest.
        x = flow.inverse(-flow.b[-1] * flow.w[-1] / (flow.w[-1] @ flow.w[-1]) * torch.ones(3, 1))
        z, log_det = flow(x)
    assert torch.all(w_dot_u_hat > -1 + 1e-5)
    assert torch.isfinite(log_det).all()
    assert float((flow.inverse(z) - x).detach().abs().max()) < 1e-4


def _spline_case(seed: int, n: int = 4001, bins: int = 8, bound: float = 3.0):
    """Points on [-5, 5] (tails included) and raw parameters shared by every point (one spline)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(-5, 5, n, dtype=torch.float64)
    raw = (2 * torch.randn(1, 3 * bins - 1, generator=gen, dtype=torch.float64)).expand(n, -1)
    return x, raw, bound


def test_spline_log_derivative_matches_finite_differences():
    for seed in range(3):
        x, raw, bound = _spline_case(seed)
        knots = spline_parameters(raw[:1], bound)[0, 0]
        # away from the knots and the ends, where the second derivative jumps
        away = (x[:, None] - knots[None]).abs().min(1).values > 1e-3
        h = 1e-6
        y, log_dy = rational_quadratic_spline(x, raw, bound)
        y_plus, _ = rational_quadratic_spline(x + h, raw, bound)
        y_minus, _ = rational_quadratic_spline(x - h, raw, bound)
        slope = (y_plus - y_minus) / (2 * h)
        assert torch.all(slope > 0)
        assert torch.allclose(log_dy[away], torch.log(slope[away]), atol=1e-6)


def test_spline_inverse_undoes_it_and_it_is_monotone_with_identity_tails():
    for seed in range(3):
        x, raw, bound = _spline_case(seed)
        y, log_dy = rational_quadratic_spline(x, raw, bound)
        x_back, log_dx = rational_quadratic_spline(y, raw, bound, inverse=True)
        assert torch.allclose(x_back, x, atol=1e-10) and torch.allclose(log_dx, -log_dy, atol=1e-9)
        assert torch.all(y[1:] > y[:-1])
        outside = x.abs() > bound
        assert torch.equal(y[outside], x[outside]) and torch.all(log_dy[outside] == 0)
        # continuous value and slope 1 where the spline meets the tails
        ends = torch.tensor([-bound, bound], dtype=torch.float64)
        y_end, log_end = rational_quadratic_spline(ends, raw[:2], bound)
        assert torch.allclose(y_end, ends, atol=1e-12) and torch.allclose(log_end, torch.zeros(2, dtype=torch.float64), atol=1e-9)


def test_spline_parametrisation():
    """Knots from -B to B, bins at least MIN_BIN wide, inner derivatives positive, end derivatives 1;
    all-zero parameters give equal bins and unit derivatives: the identity."""
    from harness_plugins.models.flows import spline

    raw = torch.randn(5, 3 * 6 - 1, dtype=torch.float64) * 3
    knots = spline_parameters(raw, 2.0)
    assert knots.shape == (5, 3, 7)
    for row in (0, 1):
        ends = knots[:, row, [0, -1]]
        assert torch.allclose(ends, torch.tensor([-2.0, 2.0], dtype=torch.float64).expand(5, 2))
        assert torch.all(knots[:, row].diff(dim=-1) >= 4.0 * spline.MIN_BIN * (1 - 1e-9))
    assert torch.all(knots[:, 2, 1:-1] > spline.MIN_DERIVATIVE) and torch.all(knots[:, 2, [0, -1]] == 1.0)
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    y, log_dy = rational_quadratic_spline(x, torch.zeros(101, 17, dtype=torch.float64), 2.0)
    assert torch.allclose(y, x, atol=1e-12) and torch.allclose(log_dy, torch.zeros_like(x), atol=1e-12)


def test_spline_autoregressive_variant_inverts_with_autograd_log_det():
    """The MADE variant on 3-D input: inverse undoes forward, log-det equals autograd's, and each
    output depends only on the inputs before it in the layer's order (lower-triangular Jacobian)."""
    from harness_plugins.models.flows.layers import Chain
    from harness_plugins.models.flows.spline import SplineAutoregressive, build_spline

    flow = perturbed(Chain(build_spline((3,), hparams("spline", couplings=2, hidden=16, depth=2, bins=6,
                                                       tail_bound=2.0, variant="autoregressive"))),
                     dtype=torch.float64, scale=0.5)
    assert all(isinstance(layer, SplineAutoregressive) for layer in flow.layers)
    x = 1.5 * torch.randn(200, 3, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    z = torch.randn(200, 3, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    x_err, z_err = _round_trips(flow, x, z)
    assert x_err < 1e-6 and z_err < 1e-6, (x_err, z_err)
    for point in x[:3]:
        _check_log_det(flow, point[None])
    for layer, order in zip(flow.layers, ([0, 1, 2], [2, 1, 0])):
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x[0])
        permuted = jac[order][:, order]
        assert torch.all(permuted.triu(1) == 0) and permuted.tril(-1).abs().sum() > 0


def test_planar_refuses_images():
    assert SPECS["planar"].incompatibility(IMAGE) is not None
    assert SPECS["planar"].incompatibility(TOY) is None


def test_image_rules_apply_only_to_images():
    spec = SPECS["realnvp"]
    toy, image = spec.resolve_hparams("smoke", TOY), spec.resolve_hparams("smoke", IMAGE)
    assert (toy["steps"], toy["batch_size"]) == (150, 256)
    assert (image["steps"], image["batch_size"], image["channels"]) == (60, 32, 8)
    assert spec.factory(TOY, toy).hparams["steps"] == 150
    image_model = spec.factory(IMAGE, {**image, "channels": 4})
    assert image_model.hparams["steps"] == 60
    first_conv = next(m for m in image_model.flow.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.out_channels == 4


@pytest.mark.parametrize("name", MODELS)
def test_every_profile_resolves_to_a_buildable_model(name):
    spec = SPECS[name]
    for profile in ("smoke", "quick", "full"):
        for dataset in (TOY, IMAGE):
            if spec.incompatibility(dataset) is None:
                hp = spec.resolve_hparams(profile, dataset)
                assert set(hp) == set(spec.hyperparameters.defaults)
                spec.factory(dataset, hp)
