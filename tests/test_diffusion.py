"""The diffusion family (ddpm, score-sde, flow-matching), checked against analytic references.

On Gaussian data N(m, S) (a full covariance, so Jacobians are not diagonal) the optimal networks are
known in closed form; each model is given its optimal network and checked:
- ddpm: the T-step variational bound equals its closed-form expectation, lies above the exact NLL
  (the Gaussian's entropy) and tightens from 10 to 100 to 1000 steps;
- score-sde: the probability-flow ODE log-likelihood equals the closed-form density of the model (the
  linear ODE's push-forward of N(0, I)) to solver tolerance, and the data's density up to the
  schedule's end points;
- flow-matching: the ODE log-likelihood equals the analytic log-density N(m, S + sigma_min^2 I) to
  solver tolerance; Hutchinson's estimate is unbiased for it;
- every sampler with its optimal network draws N(m, S) (means and covariances within tolerance).
Trained models: the ODE densities integrate to one on a 2-D grid (the flows' tolerance), smoke runs
through the runner are ok and their nll rows carry the right kinds, sampling variants, state export.
"""

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from harness import DataKind, DatasetSpec, FitContext, LikelihoodKind
from harness.profiles import get_profile
from harness.runner import Runner
from harness_plugins.models.diffusion import DDPM_HP, FLOW_MATCHING_HP, SCORE_SDE_HP
from harness_plugins.models.diffusion.ddpm import DDPM, discretised_gaussian_log_prob, variational_bound
from harness_plugins.models.diffusion.flow_matching import FlowMatching
from harness_plugins.models.diffusion.networks import UNet, build_network
from harness_plugins.models.diffusion.ode import ode_log_likelihood
from harness_plugins.models.diffusion.schedules import LogLinearSchedule
from harness_plugins.models.diffusion.score_sde import ScoreSDE

# ----------------------------------------------------------------------------- a Gaussian with known answers

MEAN = torch.tensor([0.7, -1.2], dtype=torch.float64)
ANGLE = 0.6
ROT = torch.tensor([[math.cos(ANGLE), -math.sin(ANGLE)], [math.sin(ANGLE), math.cos(ANGLE)]], dtype=torch.float64)
VARS = torch.tensor([0.25, 2.25], dtype=torch.float64)  # eigenvalues of the covariance
COV = ROT @ torch.diag(VARS) @ ROT.T
D = 2


def gaussian_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, D, generator=g, dtype=torch.float64) @ (ROT @ torch.diag(VARS.sqrt())).T


def gaussian_log_density(x, mean=MEAN, cov=COV):
    return torch.from_numpy(scipy.stats.multivariate_normal(mean.numpy(), cov.numpy()).logpdf(x.numpy()))


def entropy():
    return 0.5 * D * math.log(2 * math.pi * math.e) + 0.5 * float(VARS.log().sum())


def apply_eigen(fn_of_var, x):
    """R diag(fn(v)) R^T x for a batch of row vectors."""
    return ((x @ ROT) * fn_of_var(VARS)) @ ROT.T


def scalar_t(t):
    return float(t.reshape(-1)[0]) if torch.is_tensor(t) else float(t)


class Field(nn.Module):
    """A closed-form 'network' f(x, t) (float64); the dummy parameter gives the model its dtype."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, t):
        return self.fn(x, scalar_t(t))


SPEC = DatasetSpec(name="gauss2d", kind=DataKind.CONTINUOUS, event_shape=(2,), load=lambda root: None)


def optimal(model_cls, hp, field):
    model = model_cls(SPEC, hp)
    model.net = Field(field)
    model.shift, model.scale = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    return model


def hparams(declaration, **kw):
    return {**declaration.resolve("quick"), **kw}


# ----------------------------------------------------------------------------- ddpm


def ddpm_optimal(schedule):
    def eps(z, t):
        lam = float(schedule.logsnr(torch.tensor(t, dtype=torch.float64)))
        a2, s2 = 1 / (1 + math.exp(-lam)), 1 / (1 + math.exp(lam))
        return apply_eigen(lambda v: math.sqrt(s2) / (a2 * v + s2), z - math.sqrt(a2) * MEAN)
    return eps


def expected_bound(schedule, steps):
    """The closed-form expectation of the T-step bound for the optimal network (nats)."""
    lam = schedule.logsnr(torch.linspace(0, 1, steps + 1, dtype=torch.float64))
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    prior = 0.5 * (a2[-1] * (VARS.sum() + (MEAN**2).sum()) + D * (s2[-1] - 1 - s2[-1].log()))
    diffusion = sum(0.5 * math.expm1(float(lam[i - 1] - lam[i])) * (a2[i] * VARS / (a2[i] * VARS + s2[i])).sum()
                    for i in range(1, steps + 1))
    std2 = math.exp(-schedule.logsnr_max)
    posterior = VARS * s2[0] / (a2[0] * VARS + s2[0])
    decoder = 0.5 * D * math.log(2 * math.pi * std2) + (posterior / (2 * std2)).sum()
    return float(prior + diffusion + decoder)


def test_ddpm_bound_matches_its_expectation_lies_above_the_exact_nll_and_tightens_with_steps():
    hp = hparams(DDPM_HP, logsnr_max=10.0, logsnr_min=-10.0)
    schedule = LogLinearSchedule(10.0, -10.0)
    model = optimal(DDPM, hp, ddpm_optimal(schedule))
    x = gaussian_data(4000)
    exact_nll = -gaussian_log_density(x)
    expected = {}
    for steps in (10, 100, 1000):
        expected[steps] = expected_bound(schedule, steps)
        model.hparams["sampling_steps"] = steps
        ll = model.log_likelihood(x)
        assert ll.kind is LikelihoodKind.BOUND and ll.details["steps"] == steps
        bound = -ll.values.double()
        gap = bound - exact_nll
        stderr = float(gap.std() / math.sqrt(len(x)))
        assert float(bound.mean()) == pytest.approx(expected[steps], abs=4 * float(bound.std() / math.sqrt(len(x))))
        assert float(gap.mean()) > 4 * stderr  # above the exact NLL, beyond the Monte Carlo noise
    assert expected[10] > expected[100] > expected[1000] > entropy()
    assert expected[1000] - entropy() < 0.1  # and close to it with many steps


def test_ddpm_ancestral_sampler_with_the_optimal_network_draws_the_data_distribution():
    schedule = LogLinearSchedule(10.0, -10.0)
    model = optimal(DDPM, hparams(DDPM_HP, logsnr_max=10.0, sampling_steps=200, eval_batch=20000),
                    ddpm_optimal(schedule))
    check_samples(model.sample(20000, torch.Generator().manual_seed(3)), COV)


def test_the_discretised_decoder_is_a_distribution_over_the_levels():
    levels = 17
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64)
    mean = torch.tensor([-1.3, -0.41, 0.0, 0.52, 0.97, 2.0], dtype=torch.float64)
    for std in (0.02, 0.2, 1.0):
        log_p = discretised_gaussian_log_prob(grid[:, None].expand(levels, len(mean)), mean[None].expand(levels, -1),
                                              std, levels)
        assert torch.exp(log_p).sum(0).numpy() == pytest.approx(np.ones(len(mean)), abs=1e-6)
        h = 1 / (levels - 1)
        inner = scipy.stats.norm.cdf(((grid[5] + h - mean) / std).numpy()) - scipy.stats.norm.cdf(((grid[5] - h - mean) / std).numpy())
        reference = np.log(np.maximum(inner, 1e-12))
        assert log_p[5].numpy() == pytest.approx(reference, abs=1e-6)


def test_variational_bound_of_discrete_data_is_a_probability_bound():
    """On levels the bound is -log of a probability bound: positive, and far below the log-count of all
    images when the data are a single repeated level pattern the optimal denoiser knows."""
    levels = 5
    y = (2 * torch.tensor([[0.0, 4.0], [1.0, 3.0]], dtype=torch.float64) / (levels - 1) - 1).repeat(50, 1)
    schedule = LogLinearSchedule(2 * math.log(3 * (levels - 1)), -10.0)
    # an 'oracle' that knows the two points: the posterior over two equally likely points
    points = y[:2]

    def eps(z, t):
        lam = float(schedule.logsnr(torch.tensor(scalar_t(t), dtype=torch.float64)))
        a, s = math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))
        logits = -((z[:, None] - a * points[None]) ** 2).sum(-1) / (2 * s**2)
        w = torch.softmax(logits, 1)
        return (z - a * (w @ points)) / s

    terms = variational_bound(eps, y, schedule, 200, torch.Generator().manual_seed(0), levels=levels)
    nll = terms["total"]
    assert (nll > -1e-6).all()
    assert float(nll.mean()) == pytest.approx(math.log(2), abs=0.15)  # two equally likely patterns


# ----------------------------------------------------------------------------- flow matching


def fm_optimal(sigma_min):
    def velocity(x, t):
        a = 1 - (1 - sigma_min) * t
        coef = lambda v: (t * v - (1 - sigma_min) * a) / (t**2 * v + a**2)  # noqa: E731
        return MEAN + apply_eigen(coef, x - t * MEAN)
    return velocity


def test_flow_matching_ode_likelihood_of_the_optimal_field_is_the_analytic_density():
    sigma_min = 1e-4
    x = gaussian_data(500, seed=1)
    reference = gaussian_log_density(x, cov=COV + sigma_min**2 * torch.eye(2, dtype=torch.float64))
    errors = {}
    for tol in (1e-4, 1e-7):
        model = optimal(FlowMatching, hparams(FLOW_MATCHING_HP, ode_rtol=tol, ode_atol=tol, sigma_min=sigma_min),
                        fm_optimal(sigma_min))
        ll = model.log_likelihood(x)
        assert ll.kind is LikelihoodKind.EXACT and ll.details["divergence"] == "exact" and ll.details["rtol"] == tol
        errors[tol] = float((ll.values.double() - reference).abs().max())
    assert errors[1e-7] < 1e-5 and errors[1e-4] < 1e-2
    assert errors[1e-7] < errors[1e-4]  # the error is the solver's


def test_hutchinson_estimate_is_unbiased_and_marked_an_estimate():
    sigma_min = 1e-4
    x = gaussian_data(2000, seed=2)
    reference = gaussian_log_density(x, cov=COV + sigma_min**2 * torch.eye(2, dtype=torch.float64))
    model = optimal(FlowMatching, hparams(FLOW_MATCHING_HP, ode_rtol=1e-6, ode_atol=1e-6, exact_divergence_dims=1,
                                          probes=4), fm_optimal(sigma_min))
    ll = model.log_likelihood(x)
    assert ll.kind is LikelihoodKind.ESTIMATE and ll.details["divergence"] == "hutchinson"
    error = ll.values.double() - reference
    assert float(error.std()) > 1e-3  # the probes do add noise (a non-diagonal Jacobian)...
    assert abs(float(error.mean())) < 4 * float(error.std()) / math.sqrt(len(x))  # ...without bias
    # probe_stderr is the probes' share of the standard error of the mean
    assert ll.details["probe_stderr"] == pytest.approx(float(error.std()) / math.sqrt(len(x)), rel=0.25)


def test_flow_matching_samplers_with_the_optimal_field_draw_the_data_distribution():
    for sampler, steps in (("euler", 200), ("heun", 20)):
        model = optimal(FlowMatching, hparams(FLOW_MATCHING_HP, sampler=sampler, sampling_steps=steps,
                                              eval_batch=20000), fm_optimal(1e-4))
        check_samples(model.sample(20000, torch.Generator().manual_seed(4)), COV)


# ----------------------------------------------------------------------------- score sde


def sde_optimal(sde):
    def eps(x, t):
        a, s = sde.alpha_sigma_float(t)
        return apply_eigen(lambda v: s / (a**2 * v + s**2), x - a * MEAN)
    return eps


def sde_model_log_density(sde, x, t_eps):
    """The push-forward of N(0, I) at t = 1 by the linear probability-flow ODE of the optimal score, at
    t_eps: in the covariance's eigenbasis x_1 = a_1 m + sqrt(V_1 / V_eps) (x - a_eps m), V_t = a_t^2 v + s_t^2."""
    a_e, s_e = sde.alpha_sigma_float(t_eps)
    a_1, s_1 = sde.alpha_sigma_float(1.0)
    v_e, v_1 = a_e**2 * VARS + s_e**2, a_1**2 * VARS + s_1**2
    u = (x - a_e * MEAN) @ ROT  # eigen-coordinates
    x1 = (a_1 * MEAN) @ ROT + (v_1 / v_e).sqrt() * u
    return (-0.5 * (x1**2).sum(1) - math.log(2 * math.pi) + 0.5 * (v_1 / v_e).log().sum())


def test_score_sde_ode_likelihood_of_the_optimal_score_is_the_analytic_density():
    x = gaussian_data(500, seed=5)
    model = optimal(ScoreSDE, hparams(SCORE_SDE_HP, ode_rtol=1e-7, ode_atol=1e-7), lambda x, t: None)
    model.net = Field(sde_optimal(model.sde))
    ll = model.log_likelihood(x)
    assert ll.kind is LikelihoodKind.EXACT and ll.details["t_data"] == 1e-5
    closed_form = sde_model_log_density(model.sde, x, 1e-5)
    assert float((ll.values.double() - closed_form).abs().max()) < 1e-5
    # the model's density is the data's, up to the end points (noise at t_eps, prior mismatch at t = 1)
    assert float((closed_form - gaussian_log_density(x)).abs().mean()) < 0.05


def test_score_sde_samplers_with_the_optimal_score_draw_the_data_distribution():
    for sampler, steps in (("sde", 500), ("ode", 50)):
        model = optimal(ScoreSDE, hparams(SCORE_SDE_HP, sampler=sampler, sampling_steps=steps, eval_batch=20000),
                        lambda x, t: None)
        model.net = Field(sde_optimal(model.sde))
        check_samples(model.sample(20000, torch.Generator().manual_seed(6)), COV)


def check_samples(samples, cov):
    s = samples.double()
    assert s.mean(0).numpy() == pytest.approx(MEAN.numpy(), abs=0.05)
    assert torch.cov(s.T).numpy() == pytest.approx(cov.numpy(), abs=0.1)


def test_ode_solver_rejects_unknown_divergence():
    with pytest.raises(ValueError):
        ode_log_likelihood(lambda x, t: x, torch.zeros(1, 2), 0.0, 1.0, rtol=1e-3, atol=1e-3, divergence="nope")


# ----------------------------------------------------------------------------- trained models


@pytest.fixture(scope="module")
def trained_toys():
    """score-sde and flow-matching with their smoke networks fitted on 8gaussians for 600 steps (a second
    or two; at 150 steps score-sde still leaves a percent of its mass in tails beyond the grid)."""
    from harness.host import get_host

    host = get_host()
    spec = host.dataset("8gaussians")
    data = spec.load(None)
    models = {}
    for name in ("score-sde", "flow-matching"):
        mspec = host.model(name)
        model = mspec.factory(spec, {**mspec.resolve_hparams("smoke", spec), "steps": 600, "val_every": 600})
        model.fit(data.train, data.val, FitContext("cpu", seed=0))
        models[name] = model
    return models, data


@pytest.mark.parametrize("name", ["score-sde", "flow-matching"])
def test_ode_density_integrates_to_one_on_a_grid(trained_toys, name):
    """Midpoints of a 100 x 100 grid on [-8, 8]^2 (cells of 0.16, the modes' sd is 0.35), solved at
    1e-4 (the solver's error control is over the whole batch, so a grid wants a tighter tolerance)."""
    models, _ = trained_toys
    model = copy.copy(models[name])
    model.hparams = {**model.hparams, "eval_batch": 10000, "ode_rtol": 1e-4, "ode_atol": 1e-4}
    g = torch.linspace(-8 + 0.08, 8 - 0.08, 100)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    total = float(model.log_likelihood(points).values.double().exp().sum() * 0.16**2)
    assert abs(total - 1.0) < 1e-2, f"{name}: density integrates to {total}"


def test_sampling_variants_share_the_fitted_network_and_differ_in_steps(trained_toys):
    models, _ = trained_toys
    model = copy.copy(models["flow-matching"])
    model.hparams = {**model.hparams, "sampling_sweep": [1, 5]}
    variants = model.sampling_variants()
    own = f"steps={model.hparams['sampling_steps']}"
    assert list(variants) == sorted(variants, key=lambda k: int(k.split("=")[1])) and own in variants
    assert variants[own] is model and variants["steps=1"].net is model.net
    assert variants["steps=1"].hparams["sampling_steps"] == 1 and model.hparams["sampling_steps"] != 1
    one = variants["steps=1"].sample(500, torch.Generator().manual_seed(0))
    many = model.sample(500, torch.Generator().manual_seed(0))
    assert not torch.allclose(one, many)
    model.hparams["sampling_sweep"] = []
    assert model.sampling_variants() == {}


def test_an_exported_model_restores_to_the_same_likelihood(trained_toys):
    from harness.host import get_host

    models, data = trained_toys
    model = models["flow-matching"]
    spec = get_host().dataset("8gaussians")
    fresh = FlowMatching(spec, dict(model.hparams))
    fresh.restore_state(model.export_state())
    x = data.test.x[:200]
    assert torch.allclose(fresh.log_likelihood(x).values, model.log_likelihood(x).values)


def test_runs_are_ok_and_nll_rows_carry_the_right_kinds(host, tmp_path):
    """Smoke runs of all three models on 8gaussians (continuous, 2-D) and digits (17 levels, 64-D), and
    flow-matching on 8gaussians told to use Hutchinson's estimator (continuous: an estimate)."""
    from harness.hparams import Override

    runner = Runner(host, get_profile("smoke"), tmp_path / "a", seeds=[0], metrics=["nll"])
    store, summary = runner.run(runner.plan(["ddpm", "score-sde", "flow-matching"], ["8gaussians", "digits"], False))
    df = store.results()
    store.close()
    assert summary["ok"] == 6 and summary["failed"] == 0
    kinds = {(r.model, r.dataset): r.estimator for r in df[df.metric == "nll"].itertuples()}
    assert kinds == {("ddpm", "8gaussians"): "bound", ("score-sde", "8gaussians"): "exact",
                     ("flow-matching", "8gaussians"): "exact", ("ddpm", "digits"): "bound",
                     ("score-sde", "digits"): "bound", ("flow-matching", "digits"): "bound"}
    assert set(df[(df.dataset == "digits") & (df.metric == "bpd")]["estimator"]) == {"bound"}
    override = Override("flow-matching", "exact_divergence_dims", 1, "--set flow-matching.exact_divergence_dims=1")
    runner = Runner(host, get_profile("smoke"), tmp_path / "b", seeds=[0], metrics=["nll"], overrides=[override])
    store, summary = runner.run(runner.plan(["flow-matching"], ["8gaussians"], False))
    row = store.results().query("metric == 'nll'").iloc[0]
    store.close()
    assert row["estimator"] == "estimate" and "probe_stderr" in row["details"]


# ----------------------------------------------------------------------------- networks and declarations


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_unet_keeps_the_image_shape_and_starts_at_zero(shape):
    net = UNet(shape, channels=8, time_dim=16)
    x = torch.randn(3, *shape)
    out = net(x, torch.rand(3))
    assert out.shape == x.shape and torch.count_nonzero(out) == 0
    loss = ((net(x, torch.rand(3)) - x) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_ddpm_with_the_unet_fits_and_scores_digits_shaped_images():
    spec = DatasetSpec(name="tiny-images", kind=DataKind.DISCRETE, levels=17, event_shape=(1, 8, 8),
                       load=lambda root: None)
    g = torch.Generator().manual_seed(0)
    from harness import Split

    x = torch.randint(0, 17, (64, 1, 8, 8), generator=g).float()
    model = DDPM(spec, hparams(DDPM_HP, network="unet", channels=8, steps=3, batch_size=8, val_every=3,
                               sampling_steps=5))
    assert isinstance(model.net, UNet)
    ctx = FitContext("cpu", seed=0)
    model.fit(Split(x), Split(x[:8]), ctx)
    assert ctx.steps == 3 and ctx.total_steps == 3
    ll = model.log_likelihood(x[:4])
    assert ll.kind is LikelihoodKind.BOUND and torch.isfinite(ll.values).all()
    s = model.sample(4, torch.Generator().manual_seed(1))
    assert s.shape == (4, 1, 8, 8) and set(s.unique().tolist()) <= set(range(17))


def test_bad_sampling_steps_and_networks_are_refused():
    with pytest.raises(ValueError, match="positive integers"):
        FlowMatching(SPEC, hparams(FLOW_MATCHING_HP, sampling_sweep=[0]))
    with pytest.raises(ValueError, match="U-Net"):
        build_network((2,), hparams(FLOW_MATCHING_HP, network="unet"))
