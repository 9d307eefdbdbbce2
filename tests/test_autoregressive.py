"""Tests of the autoregressive family (MADE, PixelCNN, WaveNet) against brute-force references.

Every likelihood is exact, so on tiny events we can enumerate every configuration: probabilities
must sum to one, samples must follow them (chi-square), and the continuous MADE density must
integrate to one on a grid. The masking test checks the autoregressive property directly with
autograd: parameters of dimension i must not depend on inputs j >= i.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from harness import DataKind, DatasetSpec, FitContext, LikelihoodKind, Split
from harness_plugins.models import autoregressive

torch.set_num_threads(1)

MODELS = ("made", "pixelcnn", "wavenet")

# Small nets so every test is fast.
TINY = {
    "made": {"hidden": [32, 32], "batch_size": 64, "lr": 1e-2, "eval_every": 10},
    "pixelcnn": {"channels": 12, "blocks": 1, "first_kernel": 3, "batch_size": 64, "lr": 1e-2, "eval_every": 10},
    "wavenet": {"residual": 12, "gate": 12, "skip": 16, "batch_size": 64, "lr": 1e-2, "eval_every": 10},
}


def registered_specs() -> dict:
    specs = {}
    autoregressive.harness_register_models(register=lambda spec: specs.__setitem__(spec.name, spec))
    return specs


SPECS = registered_specs()


def hparams(name: str, **overrides) -> dict:
    """The model's declared base values with ``overrides`` (each checked against the declaration)."""
    declared = SPECS[name].hyperparameters
    return {**declared.defaults, **{k: declared.check(k, v) for k, v in overrides.items()}}


def dataset_spec(kind, shape, levels=None) -> DatasetSpec:
    return DatasetSpec(name=f"tiny-{kind}", kind=kind, event_shape=shape, levels=levels, load=lambda root: None)


def structured_discrete(n, shape, levels, seed) -> torch.Tensor:
    """Two noisy prototypes: a clearly non-uniform, correlated distribution over the levels."""
    rng = np.random.default_rng(seed)
    dim = math.prod(shape)
    protos = np.stack([np.arange(dim) % levels, (levels - 1 - np.arange(dim) % levels)])
    x = protos[rng.integers(0, 2, n)]
    noisy = rng.random((n, dim)) < 0.2
    x = np.where(noisy, rng.integers(0, levels, (n, dim)), x)
    return torch.as_tensor(x, dtype=torch.float32).reshape(n, *shape)


def fitted_model(name, spec, train_x, steps=40, seed=0, **extra):
    model = SPECS[name].factory(spec, hparams(name, **{**TINY[name], "steps": steps, **extra}))
    model.to("cpu")
    n_val = len(train_x) // 5
    ctx = FitContext(seed=seed)
    model.fit(Split(train_x[n_val:]), Split(train_x[:n_val]), ctx)
    assert ctx.steps == ctx.total_steps == model.fitted_steps == steps
    return model


def all_configurations(levels, shape) -> torch.Tensor:
    grid = list(itertools.product(range(levels), repeat=math.prod(shape)))
    return torch.tensor(grid, dtype=torch.float32).reshape(len(grid), *shape)


def config_index(x: torch.Tensor, levels: int) -> np.ndarray:
    """Row-major index of each configuration, matching :func:`all_configurations`."""
    flat = x.reshape(x.shape[0], -1).long().numpy()
    weights = levels ** np.arange(flat.shape[1] - 1, -1, -1)
    return flat @ weights


def chisquare_pooled(observed: np.ndarray, probs: np.ndarray) -> float:
    """p-value of a chi-square goodness-of-fit test; bins with expected count < 5 are pooled."""
    expected = probs / probs.sum() * observed.sum()
    big = expected >= 5
    f_obs, f_exp = list(observed[big]), list(expected[big])
    if (~big).any():
        f_obs.append(observed[~big].sum())
        f_exp.append(expected[~big].sum())
    return float(chisquare(np.array(f_obs, float), np.array(f_exp, float)).pvalue)


def event_shape(name, dim):
    return (1, 2, dim // 2) if name == "pixelcnn" else (dim,)


# --------------------------------------------------------------------------- registration


def test_registration_declares_three_exact_autoregressive_models(host):
    assert sorted(SPECS) == sorted(MODELS)
    for spec in SPECS.values():
        assert spec.family == "autoregressive"
        assert spec.likelihood is LikelihoodKind.EXACT
        for profile in ("smoke", "quick", "full"):
            assert spec.resolve_hparams(profile)["steps"] > 0 and spec.datasets_for(profile, host.registry.datasets)
    flat = dataset_spec(DataKind.BINARY, (8,))
    image = dataset_spec(DataKind.BINARY, (1, 2, 4))
    assert "image" in SPECS["pixelcnn"].incompatibility(flat)
    assert SPECS["pixelcnn"].incompatibility(image) is None
    assert SPECS["wavenet"].incompatibility(flat) is None
    assert SPECS["wavenet"].incompatibility(dataset_spec(DataKind.CONTINUOUS, (2,))) is not None
    assert SPECS["made"].incompatibility(dataset_spec(DataKind.CONTINUOUS, (2,))) is None


# --------------------------------------------------------------------------- exact probabilities


@pytest.mark.parametrize("name", MODELS)
def test_binary_probabilities_sum_to_one_and_samples_follow_them(name):
    shape = event_shape(name, 8)
    spec = dataset_spec(DataKind.BINARY, shape)
    model = fitted_model(name, spec, structured_discrete(1000, shape, 2, seed=1))
    configs = all_configurations(2, shape)
    ll = model.log_likelihood(configs)
    assert ll.kind is LikelihoodKind.EXACT and ll.values.shape == (256,)
    probs = ll.values.double().exp().numpy()
    assert abs(probs.sum() - 1) < 1e-5
    assert probs.max() > 10 / 256  # training made the distribution far from uniform

    samples = model.sample(20000, torch.Generator().manual_seed(123))
    assert samples.shape == (20000, *shape)
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    counts = np.bincount(config_index(samples, 2), minlength=256)
    assert chisquare_pooled(counts, probs) > 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_discrete_probabilities_sum_to_one_and_samples_follow_them(name):
    shape = event_shape(name, 4)
    spec = dataset_spec(DataKind.DISCRETE, shape, levels=3)
    model = fitted_model(name, spec, structured_discrete(1000, shape, 3, seed=2))
    configs = all_configurations(3, shape)
    probs = model.log_likelihood(configs).values.double().exp().numpy()
    assert abs(probs.sum() - 1) < 1e-5

    samples = model.sample(20000, torch.Generator().manual_seed(7))
    counts = np.bincount(config_index(samples, 3), minlength=81)
    assert counts.sum() == 20000
    assert chisquare_pooled(counts, probs) > 1e-3


def test_made_with_many_levels_sums_to_one():
    """With 40 levels MADE routes its output through a few units per dimension and a
    per-dimension linear map; the categorical must still be normalised over all 40^2 pairs."""
    spec = dataset_spec(DataKind.DISCRETE, (2,), levels=40)
    model = fitted_model("made", spec, structured_discrete(500, (2,), 40, seed=4), steps=20)
    assert model.net.proj_weight is not None
    probs = model.log_likelihood(all_configurations(40, (2,))).values.double().exp()
    assert abs(float(probs.sum()) - 1) < 1e-5


def test_made_continuous_density_integrates_to_one():
    rng = np.random.default_rng(0)
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    x = torch.as_tensor(centres[rng.integers(0, 4, 2000)] + 0.4 * rng.standard_normal((2000, 2)), dtype=torch.float32)
    spec = dataset_spec(DataKind.CONTINUOUS, (2,))
    model = fitted_model("made", spec, x, steps=100, components=5)
    half, n = 8.0, 400
    h = 2 * half / n
    g = -half + h * (torch.arange(n, dtype=torch.float32) + 0.5)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    ll = model.log_likelihood(grid)
    assert ll.kind is LikelihoodKind.EXACT
    mass = float(ll.values.double().exp().sum() * h * h)
    assert abs(mass - 1) < 1e-2
    # Samples are in data space: their mean matches the training mean (4 stderr of a 4000 draw mean).
    samples = model.sample(4000, torch.Generator().manual_seed(3))
    assert samples.shape == (4000, 2)
    se = x.std(0) / math.sqrt(4000) + samples.std(0) / math.sqrt(4000)
    assert torch.all((samples.mean(0) - x.mean(0)).abs() < 4 * se + 0.05)


# --------------------------------------------------------------------------- masking


MASK_CASES = [
    ("made", DataKind.BINARY, (10,), None),
    ("made", DataKind.DISCRETE, (3, 2, 2), 5),
    ("made", DataKind.CONTINUOUS, (6,), None),
    ("made", DataKind.DISCRETE, (5,), 40),  # many levels: the factorised per-dimension output
    ("pixelcnn", DataKind.BINARY, (1, 7, 3), None),
    ("pixelcnn", DataKind.DISCRETE, (3, 3, 3), 4),
    ("wavenet", DataKind.BINARY, (12,), None),
    ("wavenet", DataKind.DISCRETE, (2, 3, 3), 4),
    ("wavenet", DataKind.BINARY, (9,), None, {"stacks": 2}),
]


@pytest.mark.parametrize("name,kind,shape,levels,extra", [c if len(c) == 5 else (*c, {}) for c in MASK_CASES])
def test_parameters_of_dimension_i_ignore_inputs_j_at_or_after_i(name, kind, shape, levels, extra):
    spec = dataset_spec(kind, shape, levels)
    model = SPECS[name].factory(spec, hparams(name, **{**TINY[name], **extra}))
    dim = spec.dim
    h = torch.randn(3, dim, generator=torch.Generator().manual_seed(0), requires_grad=True)
    params = model.net(h)
    assert params.shape == (3, dim, model.head.n_params)
    jac = torch.zeros(dim, dim)
    for i in range(dim):
        (grad,) = torch.autograd.grad(params[:, i].sum(), h, retain_graph=True)
        jac[i] = grad.abs().sum(0)
    upper = torch.triu(torch.ones(dim, dim, dtype=torch.bool))  # j >= i
    assert torch.all(jac[upper] == 0)
    if name == "pixelcnn":  # PixelCNN has a blind spot, but every later position sees something
        assert torch.all(jac[1:].sum(1) > 0)
    else:  # MADE and a WaveNet whose receptive field covers the sequence see every earlier input
        assert torch.all(jac[~upper] > 0)
    # The sampler's shortcut (computing only what position i needs) gives the same parameters.
    with torch.no_grad():
        full = model.net(h)
        for i in range(dim):
            assert torch.allclose(model.net.params_at(h, i), full[:, i], atol=1e-5)
        if hasattr(model.net, "start_generation"):  # WaveNet's fast generation queues
            fast = model.net.start_generation(3, "cpu")
            for i in range(dim):
                assert torch.allclose(fast.params(h, i), full[:, i], atol=1e-5)


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("name", MODELS)
def test_fitted_model_recovers_a_known_distribution(name):
    """Train on 4 binary dimensions drawn from a known distribution; the exact KL divergence
    between it and the model (enumerated over the 16 configurations) must be small, and far below
    the KL of the best fully independent model (the product of the true marginals)."""
    shape = event_shape(name, 4)
    rng = np.random.default_rng(5)
    true = rng.dirichlet(np.full(16, 0.5))
    configs = all_configurations(2, shape)
    data = configs[torch.as_tensor(rng.choice(16, size=4000, p=true))]
    model = fitted_model(name, dataset_spec(DataKind.BINARY, shape), data, steps=300, lr=1e-2)
    model_p = model.log_likelihood(configs).values.double().exp().numpy()
    kl = float(np.sum(true * (np.log(true) - np.log(model_p))))

    bits = configs.reshape(16, -1).numpy()
    marg = true @ bits
    indep = np.prod(np.where(bits == 1, marg, 1 - marg), axis=1)
    kl_indep = float(np.sum(true * (np.log(true) - np.log(indep))))
    # The empirical distribution of 3200 draws has KL ~ (16-1)/(2*3200) ~ 0.002 to the truth.
    assert kl < 0.05
    assert kl < kl_indep / 4


@pytest.mark.parametrize("name", MODELS)
def test_a_job_is_reproducible_from_its_seed(name):
    shape = event_shape(name, 8)
    spec = dataset_spec(DataKind.BINARY, shape)
    data = structured_discrete(300, shape, 2, seed=3)
    a = fitted_model(name, spec, data, steps=5, seed=11).log_likelihood(data[:20]).values
    b = fitted_model(name, spec, data, steps=5, seed=11).log_likelihood(data[:20]).values
    assert torch.equal(a, b)
