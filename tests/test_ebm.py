"""Tests of the energy-based family (harness_plugins/models/ebm/) against brute-force enumeration and scipy.

Every reference is computed here independently: energies summed term by term over ALL joint states
(visible and hidden), exact visible distributions for the chi-square tests of Gibbs sampling.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from harness import DataKind, DatasetSpec, FitContext, LikelihoodKind, Split
from harness_plugins.models import ebm

torch.set_num_threads(1)


def binary_spec(dim: int, name: str = "tiny-binary") -> DatasetSpec:
    def load(root=None):  # never called: the tests hand the models their data directly
        raise AssertionError("not used")
    return DatasetSpec(name=name, kind=DataKind.BINARY, event_shape=(dim,), load=load)


def all_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def as_tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def hparams(name: str, **overrides) -> dict:
    """The model's declared base values with ``overrides`` (each checked against the declaration)."""
    declared = registered_specs()[name].hyperparameters
    return {**declared.defaults, **{k: declared.check(k, v) for k, v in overrides.items()}}


# --------------------------------------------------------------------------- random machines


def random_fvbm(dim, scale, seed, **hp):
    rng = np.random.default_rng(seed)
    W = rng.normal(0, scale, (dim, dim))
    W = np.triu(W, 1)
    W = W + W.T
    b = rng.normal(0, 1, dim)
    model = ebm.FullyVisibleBoltzmann(binary_spec(dim), hparams("boltzmann", **hp))
    model.set_parameters(as_tensor(W), as_tensor(b))
    return model, W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)


def random_rbm(n_visible, n_hidden, scale, seed, **hp):
    rng = np.random.default_rng(seed)
    W, a, c = rng.normal(0, scale, (n_visible, n_hidden)), rng.normal(0, 1, n_visible), rng.normal(0, 1, n_hidden)
    model = ebm.RestrictedBoltzmann(binary_spec(n_visible), hparams("rbm", **hp))
    model.set_parameters(as_tensor(W), as_tensor(a), as_tensor(c))
    return model, *(t.astype(np.float32).astype(np.float64) for t in (W, a, c))


def random_dbm(n_visible, n1, n2, scale, seed, **hp):
    rng = np.random.default_rng(seed)
    W1, W2 = rng.normal(0, scale, (n_visible, n1)), rng.normal(0, scale, (n1, n2))
    a, b1, b2 = rng.normal(0, 1, n_visible), rng.normal(0, 1, n1), rng.normal(0, 1, n2)
    model = ebm.DeepBoltzmann(binary_spec(n_visible), hparams("dbm", **hp))
    model.set_parameters(*(as_tensor(t) for t in (W1, W2, a, b1, b2)))
    return model, *(t.astype(np.float32).astype(np.float64) for t in (W1, W2, a, b1, b2))


# --------------------------------------------------------------------------- brute force


def fvbm_log_weights(W, b):
    """-E(y) for every state, summing the pair terms one by one: sum_{i<j} W_ij y_i y_j + b'y."""
    states = all_states(len(b))
    out = []
    for y in states:
        pairs = sum(W[i, j] * y[i] * y[j] for i in range(len(b)) for j in range(i + 1, len(b)))
        out.append(pairs + b @ y)
    return states, np.array(out)


def rbm_joint_log_weights(W, a, c):
    """-E(v, h) over ALL joint states; returns the visible part of each state and the log-weights."""
    nv, nh = W.shape
    joint = all_states(nv + nh)
    v, h = joint[:, :nv], joint[:, nv:]
    return v, np.einsum("si,ij,sj->s", v, W, h) + v @ a + h @ c


def dbm_joint_log_weights(W1, W2, a, b1, b2):
    nv, n1 = W1.shape
    n2 = W2.shape[1]
    joint = all_states(nv + n1 + n2)
    v, h1, h2 = joint[:, :nv], joint[:, nv:nv + n1], joint[:, nv + n1:]
    log_w = np.einsum("si,ij,sj->s", v, W1, h1) + np.einsum("si,ij,sj->s", h1, W2, h2) + v @ a + h1 @ b1 + h2 @ b2
    return v, log_w


def visible_log_probs(v_of_state, log_w, n_visible):
    """log p(v) for every visible state (in all_states order) by summing the joint over the rest."""
    codes = (v_of_state @ (2 ** np.arange(n_visible)[::-1])).astype(int)
    log_z = logsumexp(log_w)
    return np.array([logsumexp(log_w[codes == k]) for k in range(2 ** n_visible)]) - log_z, log_z


# --------------------------------------------------------------------------- exact log Z


def test_fvbm_exact_log_z_matches_brute_force():
    model, W, b = random_fvbm(8, 1.0, seed=0)
    _, log_w = fvbm_log_weights(W, b)
    assert model.log_partition()["log_z_method"] == "exact"
    assert model.log_partition()["log_z"] == pytest.approx(logsumexp(log_w), abs=1e-9)


@pytest.mark.parametrize("n_visible,n_hidden", [(6, 4), (4, 6)])  # sums over h, then over v
def test_rbm_exact_log_z_matches_brute_force(n_visible, n_hidden):
    model, W, a, c = random_rbm(n_visible, n_hidden, 1.0, seed=1)
    _, log_w = rbm_joint_log_weights(W, a, c)
    assert model.log_partition()["log_z"] == pytest.approx(logsumexp(log_w), abs=1e-9)


@pytest.mark.parametrize("n1,n2", [(4, 3), (3, 4)])  # log p*(v) enumerates h2, then h1
def test_dbm_exact_log_z_and_marginals_match_brute_force(n1, n2):
    model, *params = random_dbm(5, n1, n2, 1.0, seed=2)
    v, log_w = dbm_joint_log_weights(*params)
    reference, log_z = visible_log_probs(v, log_w, 5)
    assert model.log_partition()["log_z"] == pytest.approx(log_z, abs=1e-9)
    ll = model.log_likelihood(as_tensor(all_states(5)))
    assert ll.kind is LikelihoodKind.EXACT
    np.testing.assert_allclose(ll.values.double().numpy(), reference, atol=1e-4)


def test_dbm_mean_field_is_a_lower_bound_on_log_p_star():
    model, *params = random_dbm(5, 4, 3, 1.0, seed=3, exact_max_units=2)
    v, log_w = dbm_joint_log_weights(*params)
    reference, log_z = visible_log_probs(v, log_w, 5)
    bound, how = model._log_unnormalized(torch.as_tensor(all_states(5)), model.params.as_dict(torch.float64))
    assert how == "mean-field lower bound"
    gap = reference + log_z - bound.numpy()
    assert gap.min() >= -1e-6  # a bound: never above log p*(v)
    assert gap.mean() < 1.0  # and not vacuous on a small weakly coupled model


# --------------------------------------------------------------------------- AIS


def test_rbm_ais_log_z_agrees_with_exact():
    model, *_ = random_rbm(40, 15, 0.3, seed=4, ais_betas=1000, ais_chains=100)
    model.base_logits = torch.zeros(40)
    exact = model.log_partition("exact")["log_z"]
    ais = model.log_partition("ais")
    assert ais["log_z_method"] == "ais" and ais["betas"] == 1000 and ais["chains"] == 100
    assert 0 < ais["stderr"] < 1.0
    assert abs(ais["log_z"] - exact) < 3 * ais["stderr"]


def test_dbm_ais_log_z_agrees_with_exact():
    model, *_ = random_dbm(30, 12, 8, 0.3, seed=5, ais_betas=1000, ais_chains=100)
    model.base_logits = torch.zeros(30)
    exact = model.log_partition("exact")["log_z"]
    ais = model.log_partition("ais")
    assert 0 < ais["stderr"] < 1.0
    assert abs(ais["log_z"] - exact) < 3 * ais["stderr"]


def test_fvbm_ais_log_z_agrees_with_exact_and_is_used_beyond_the_limit():
    model, *_ = random_fvbm(14, 0.3, seed=6, ais_betas=500, ais_chains=100, exact_max_units=10)
    with pytest.raises(ValueError):
        model.log_partition("exact")
    auto = model.log_partition()
    assert auto["log_z_method"] == "ais"
    model.hp["exact_max_units"] = 20
    exact = model.log_partition("exact")["log_z"]
    assert 0 < auto["stderr"] < 1.0
    assert abs(auto["log_z"] - exact) < 3 * auto["stderr"]
    ll = model.log_likelihood(as_tensor(np.zeros((2, 14))))
    assert ll.kind is LikelihoodKind.ESTIMATE and ll.shared_stderr == pytest.approx(auto["stderr"])
    assert ll.details["log_z_method"] == "ais" and ll.details["betas"] == 500


# --------------------------------------------------------------------------- Gibbs sampling


def chi_square_p_value(samples: torch.Tensor, log_probs: np.ndarray) -> float:
    n_visible = samples.shape[1]
    codes = (samples.numpy() @ (2 ** np.arange(n_visible)[::-1])).astype(int)
    observed = np.bincount(codes, minlength=2 ** n_visible)
    expected = np.exp(log_probs) * len(codes)
    return stats.chisquare(observed, expected / expected.sum() * len(codes)).pvalue


def test_fvbm_gibbs_samples_match_exact_distribution():
    model, W, b = random_fvbm(4, 1.5, seed=7, sample_burn_in=30)
    _, log_w = fvbm_log_weights(W, b)
    samples = model.sample(20000, torch.Generator().manual_seed(0))
    assert samples.shape == (20000, 4) and set(samples.unique().tolist()) <= {0.0, 1.0}
    assert chi_square_p_value(samples, log_w - logsumexp(log_w)) > 1e-3


def test_rbm_gibbs_samples_match_exact_distribution():
    model, W, a, c = random_rbm(4, 3, 1.5, seed=8, sample_burn_in=50)
    reference, _ = visible_log_probs(*rbm_joint_log_weights(W, a, c), 4)
    samples = model.sample(20000, torch.Generator().manual_seed(1))
    assert chi_square_p_value(samples, reference) > 1e-3


def test_dbm_gibbs_samples_match_exact_distribution():
    model, *params = random_dbm(4, 3, 2, 1.5, seed=9, sample_burn_in=50)
    reference, _ = visible_log_probs(*dbm_joint_log_weights(*params), 4)
    samples = model.sample(20000, torch.Generator().manual_seed(2))
    assert chi_square_p_value(samples, reference) > 1e-3


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("make", [
    lambda: random_fvbm(7, 1.0, seed=10)[0],
    lambda: random_rbm(7, 5, 1.0, seed=11)[0],
    lambda: random_dbm(7, 5, 4, 1.0, seed=12)[0],
])
def test_log_likelihood_sums_to_one_over_all_visible_states(make):
    model = make()
    ll = model.log_likelihood(as_tensor(all_states(7)))
    assert ll.kind is LikelihoodKind.EXACT and ll.shared_stderr == 0.0
    assert ll.details["log_z_method"] == "exact"
    assert torch.exp(ll.values.double()).sum().item() == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- training through the hook


def registered_specs():
    specs = {}
    ebm.harness_register_models(lambda spec: specs.__setitem__(spec.name, spec))
    return specs


def test_registration():
    specs = registered_specs()
    assert set(specs) == {"boltzmann", "rbm", "dbm"}
    for spec in specs.values():
        assert spec.family == "ebm" and spec.data_kinds == {DataKind.BINARY}
        assert spec.incompatibility(binary_spec(4)) is None
        for profile in ("smoke", "quick", "full"):
            assert spec.datasets_for(profile, {}) and spec.resolve_hparams(profile)["steps"] > 0


def test_digits_binary_gets_its_own_values_per_profile():
    """The rules for digits-binary (64 units: a small machine with exact log Z) apply on that dataset
    only, after the profile's values."""
    specs = registered_specs()
    digits, mnist = binary_spec(64, name="digits-binary"), binary_spec(784, name="mnist5k-binary")
    rbm, dbm = specs["rbm"], specs["dbm"]
    assert rbm.resolve_hparams("smoke", digits)["hidden"] == 16
    assert (rbm.resolve_hparams("quick", digits)["hidden"], rbm.resolve_hparams("quick", mnist)["hidden"]) == (20, 200)
    quick = dbm.resolve_hparams("quick", digits)
    assert (quick["hidden1"], quick["hidden2"], quick["pretrain_steps"], quick["steps"]) == (20, 10, 1500, 2000)
    full = dbm.resolve_hparams("full", mnist)
    assert (full["hidden1"], full["hidden2"], full["pretrain_steps"], full["steps"]) == (500, 1000, 20000, 100000)


@pytest.mark.parametrize("name,hp", [
    ("boltzmann", {"steps": 300}),
    ("rbm", {"steps": 300, "hidden": 8, "training": "cd", "k": 1, "lr": 0.2, "momentum": 0.9}),
    ("rbm", {"steps": 300, "hidden": 8, "training": "pcd", "lr": 0.2, "momentum": 0.9}),
    ("dbm", {"steps": 300, "pretrain_steps": 150, "hidden1": 8, "hidden2": 4, "pretrain_lr": 0.2, "lr": 0.05,
             "momentum": 0.9}),
])
def test_training_beats_the_independent_bernoulli_model(name, hp):
    """Data: two noisy copies of 4 fair bits (strong pairwise dependence). A trained machine's exact
    test NLL must be well below that of independent Bernoulli units fitted to the same data
    (computed here in closed form), and above the data's true entropy (the lowest reachable)."""
    rng = np.random.default_rng(13)

    def draw(n):
        bits = rng.integers(0, 2, (n, 4))
        flips = rng.random((n, 8)) < 0.05
        return np.abs(np.concatenate([bits, bits], 1) - flips)
    train, test = draw(3000), draw(2000)
    spec = binary_spec(8, name="copies")
    model = registered_specs()[name].factory(spec, hparams(name, batch_size=100, **hp))
    ctx = FitContext("cpu", seed=0)
    model.fit(Split(as_tensor(train)), Split(as_tensor(train[:100])), ctx)
    assert ctx.steps == ctx.total_steps == hp["steps"] + 2 * hp.get("pretrain_steps", 0)
    ll = model.log_likelihood(as_tensor(test))
    assert ll.kind is LikelihoodKind.EXACT
    nll = -ll.values.double().mean().item()
    p = (train.sum(0) + 1) / (len(train) + 2)
    independent_nll = -(test * np.log(p) + (1 - test) * np.log(1 - p)).sum(1).mean()
    same, differ = (0.95 ** 2 + 0.05 ** 2) / 2, (2 * 0.95 * 0.05) / 2  # each of 2 equal / 2 unequal pairs
    true_entropy = 4 * -2 * (same * math.log(same) + differ * math.log(differ))
    assert independent_nll == pytest.approx(8 * math.log(2), abs=0.05)
    assert nll < independent_nll - 0.5
    assert nll > true_entropy - 0.1
    # Gibbs samples of the trained machine reproduce its own exact rate of agreement between copies
    # (the mean of 2000 independent chains' values in [0, 1]: standard error <= 0.5 / sqrt(2000)).
    states = as_tensor(all_states(8))
    p = torch.exp(model.log_likelihood(states).values.double())
    exact_agree = (p * (states[:, :4] == states[:, 4:]).double().mean(1)).sum().item()
    samples = model.sample(2000, torch.Generator().manual_seed(3))
    assert samples.shape == (2000, 8)
    agree = (samples[:, :4] == samples[:, 4:]).double().mean().item()
    assert abs(agree - exact_agree) < 4 * 0.5 / math.sqrt(2000)
    assert exact_agree > 0.6  # the data's copies agree with probability 0.95^2 + 0.05^2 = 0.905


def test_fit_stops_at_the_deadline():
    model = registered_specs()["rbm"].factory(binary_spec(6), hparams("rbm", steps=1000, hidden=4))
    ctx = FitContext("cpu", seed=0, deadline=0.0)
    model.fit(Split(torch.zeros(10, 6)), Split(torch.zeros(2, 6)), ctx)
    assert ctx.steps == 0
    assert np.isfinite(model.log_likelihood(torch.zeros(3, 6)).values.numpy()).all()
