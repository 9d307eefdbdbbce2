"""Tests of the AIS / RAISE interval of the energy-based family (harness_plugins/models/ebm/): the RAISE weights
against the annealing model computed by brute force, the exact log Z inside the interval, and the
``nll_upper`` metric.

References are computed here, independently of the models' code: transition matrices over every state
(numpy), the annealing model as the base-rate distribution pushed through them, exact log Z and exact
samples by enumerating the hidden states.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import expit, logsumexp

from harness import Capability, DataKind, Dataset, DatasetSpec, LikelihoodKind, MetricContext, Split
from harness.contracts import Splits
from harness.profiles import get_profile
from harness_plugins.models import ebm
from harness_plugins.models.ebm.bracket import compute_nll_bracket, nll_bracket_metric
from harness_plugins.models.ebm.common import ais_schedule

torch.set_num_threads(1)


def states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def bernoulli_probs(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """prod_i p_i^x_i (1 - p_i)^(1 - x_i) for every row of p (..., n) against every state x (S, n): (..., S)."""
    return np.exp(np.log(p)[..., None, :] @ x.T + np.log1p(-p)[..., None, :] @ (1 - x).T).squeeze(-2)


def spec(dim: int, name: str = "tiny-binary") -> DatasetSpec:
    return DatasetSpec(name=name, kind=DataKind.BINARY, event_shape=(dim,), load=lambda root: None)


def registered() -> dict:
    specs = {}
    ebm.harness_register_models(lambda s: specs.__setitem__(s.name, s))
    return specs


SPECS = registered()


def hparams(name: str, **overrides) -> dict:
    declared = SPECS[name].hyperparameters
    return {**declared.defaults, **{k: declared.check(k, v) for k, v in overrides.items()}}


def rbm(n_visible, n_hidden, scale, seed, **hp):
    rng = np.random.default_rng(seed)
    W, a, c = rng.normal(0, scale, (n_visible, n_hidden)), rng.normal(0, 1, n_visible), rng.normal(0, 1, n_hidden)
    base = rng.normal(0, 1, n_visible)
    model = ebm.RestrictedBoltzmann(spec(n_visible), hparams("rbm", **hp))
    model.set_parameters(*(torch.as_tensor(t, dtype=torch.float32) for t in (W, a, c, base)))
    return model, *(t.astype(np.float32).astype(np.float64) for t in (W, a, c, base))


# --------------------------------------------------------------------------- annealing models by brute force


def rbm_annealing_model(W, a, c, base, betas) -> np.ndarray:
    """p_ann over all visible states: the base-rate model pushed through the kernels v -> h -> v' at
    betas[1..K] of f_beta(v, h) = exp((1 - beta) base'v + beta (v'Wh + a'v + c'h))."""
    v, h = states(W.shape[0]), states(W.shape[1])
    q = bernoulli_probs(expit(base), v)
    for beta in betas[1:]:
        p_h = bernoulli_probs(expit(beta * (v @ W + c)), h)  # (V, H)
        p_v = bernoulli_probs(expit((1 - beta) * base + beta * (h @ W.T + a)), v)  # (H, V)
        q = q @ (p_h @ p_v)
    return q


def fvbm_annealing_model(W, b, base, betas) -> np.ndarray:
    """p_ann over all states: base rate, then at each beta one sweep of single-unit Gibbs updates in the
    order 0..D-1, unit i on with probability sigmoid(beta (W y + b)_i + (1 - beta) base_i)."""
    y = states(len(b))
    codes = (y @ (2 ** np.arange(len(b))[::-1])).astype(int)
    q = bernoulli_probs(expit(base), y)
    for beta in betas[1:]:
        for i in range(len(b)):
            on = expit(beta * (y @ W[:, i] + b[i]) + (1 - beta) * base[i])  # W has a zero diagonal
            flipped = y.copy()
            flipped[:, i] = 1 - flipped[:, i]
            kernel = np.zeros((len(y), len(y)))
            stay = np.where(y[:, i] == 1, on, 1 - on)
            kernel[np.arange(len(y)), codes] = stay
            kernel[np.arange(len(y)), (flipped @ (2 ** np.arange(len(b))[::-1])).astype(int)] = 1 - stay
            q = q @ kernel
    return q


def dbm_annealing_model(W1, W2, a, b1, b2, base, betas) -> np.ndarray:
    """p_ann over visible states: h1 uniform, the kernels h1 -> (v, h2) -> h1' at betas[1..K] of
    f_beta = exp((1 - beta) base'v + beta (v'W1 h1 + h1'W2 h2 + a'v + b1'h1 + b2'h2)), then v ~ p(v | h1)."""
    v, h1, h2 = states(W1.shape[0]), states(W1.shape[1]), states(W2.shape[1])
    q = np.full(len(h1), 1.0 / len(h1))
    for beta in betas[1:]:
        p_v = bernoulli_probs(expit((1 - beta) * base + beta * (h1 @ W1.T + a)), v)  # (H1, V)
        p_h2 = bernoulli_probs(expit(beta * (h1 @ W2 + b2)), h2)  # (H1, H2)
        fields = beta * ((v @ W1)[:, None, :] + (h2 @ W2.T)[None] + b1)  # (V, H2, n1)
        p_h1 = bernoulli_probs(expit(fields), h1)  # (V, H2, H1)
        q = q @ np.einsum("iv,ik,vkj->ij", p_v, p_h2, p_h1)
    return q @ bernoulli_probs(expit(h1 @ W1.T + a), v)


def _weights(model, v: np.ndarray, betas: list, chains: int, seed: int) -> np.ndarray:
    x = torch.as_tensor(np.repeat(v, chains, 0), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    return model._raise_log_weights(x, betas, gen).numpy().reshape(len(v), chains)


def _check_unbiased(model, v, p_ann, p_model, betas, chains=40000):
    """mean(w) = p_ann(v) within 4 standard errors, and p_ann differs from the machine's p(v) by more
    (the test tells an estimator of p_ann from one of p)."""
    w = np.exp(_weights(model, v, betas, chains, seed=1))
    mean, se = w.mean(1), w.std(1) / math.sqrt(chains)
    assert np.all(np.abs(mean - p_ann) < 4 * se), (mean, p_ann, se)
    assert np.any(np.abs(p_model - p_ann) > 8 * se), (p_model, p_ann, se)


BETAS = ais_schedule(3).tolist()  # [0, 0.5, 0.9, 1]: three transitions, a coarse annealing model


def test_rbm_raise_weights_are_unbiased_for_the_annealing_model():
    model, W, a, c, base = rbm(5, 3, 1.5, seed=0)
    p_ann = rbm_annealing_model(W, a, c, base, BETAS)
    v = states(5)[[0, 7, 19, 31]]
    codes = (v @ (2 ** np.arange(5)[::-1])).astype(int)
    p_model = np.exp(model.log_likelihood(torch.as_tensor(v)).values.double().numpy())
    _check_unbiased(model, v, p_ann[codes], p_model, BETAS)


def test_fvbm_raise_weights_are_unbiased_for_the_annealing_model():
    rng = np.random.default_rng(1)
    W = np.triu(rng.normal(0, 1.5, (4, 4)), 1)
    W, b, base = W + W.T, rng.normal(0, 1, 4), rng.normal(0, 1, 4)
    model = ebm.FullyVisibleBoltzmann(spec(4), hparams("boltzmann"))
    model.set_parameters(*(torch.as_tensor(t, dtype=torch.float32) for t in (W, b, base)))
    W, b, base = (t.astype(np.float32).astype(np.float64) for t in (W, b, base))
    p_ann = fvbm_annealing_model(W, b, base, BETAS)
    v = states(4)[[0, 5, 10, 15]]
    codes = (v @ (2 ** np.arange(4)[::-1])).astype(int)
    p_model = np.exp(model.log_likelihood(torch.as_tensor(v)).values.double().numpy())
    _check_unbiased(model, v, p_ann[codes], p_model, BETAS)


def test_dbm_raise_weights_are_unbiased_for_the_annealing_model():
    """The mean-field proposal for h1 changes the variance of the weights, never their mean."""
    rng = np.random.default_rng(2)
    W1, W2 = rng.normal(0, 1.5, (4, 3)), rng.normal(0, 1.5, (3, 2))
    a, b1, b2, base = rng.normal(0, 1, 4), rng.normal(0, 1, 3), rng.normal(0, 1, 2), rng.normal(0, 1, 4)
    model = ebm.DeepBoltzmann(spec(4), hparams("dbm"))
    model.set_parameters(*(torch.as_tensor(t, dtype=torch.float32) for t in (W1, W2, a, b1, b2, base)))
    params = [t.astype(np.float32).astype(np.float64) for t in (W1, W2, a, b1, b2, base)]
    p_ann = dbm_annealing_model(*params, BETAS)
    v = states(4)[[0, 6, 9, 15]]
    codes = (v @ (2 ** np.arange(4)[::-1])).astype(int)
    p_model = np.exp(model.log_likelihood(torch.as_tensor(v)).values.double().numpy())
    _check_unbiased(model, v, p_ann[codes], p_model, BETAS)


# --------------------------------------------------------------------------- the interval on an enumerable RBM


def exact_rbm(W, a, c) -> tuple:
    """log Z by enumerating the hidden states, and a sampler drawing h from p(h), then v | h."""
    h = states(W.shape[1])
    log_ph = h @ c + np.logaddexp(0, h @ W.T + a).sum(1)
    log_z = logsumexp(log_ph)

    def draw(n, rng):
        idx = rng.choice(len(h), size=n, p=np.exp(log_ph - log_z))
        return (rng.random((n, W.shape[0])) < expit(h[idx] @ W.T + a)).astype(np.float64)

    return log_z, draw


def test_exact_log_z_lies_inside_the_ais_raise_interval_over_seeds():
    """An RBM of 24 visible and 12 hidden units with strong couplings, a short schedule (100
    temperatures) and test points drawn exactly from the machine. Over six seeds, the exact log Z lies
    inside [AIS log Z - 2 se, RAISE log Z], where the RAISE end is the log Z it implies (mean of
    log p*(v) - log p_raise(v)). AIS estimates Z without bias, so its log is only low in expectation
    and a single run may land above the truth within its noise; RAISE, whose weights are far more
    spread on a short schedule, sits above the truth by many standard errors on every seed."""
    model, W, a, c, _ = rbm(24, 12, 0.8, seed=3, ais_betas=100, ais_chains=50, raise_betas=100, raise_chains=1)
    log_z, draw = exact_rbm(W, a, c)
    assert model.log_partition("exact")["log_z"] == pytest.approx(log_z, abs=1e-6)
    v = torch.as_tensor(draw(300, np.random.default_rng(4)))
    log_p_star = model.log_likelihood(v).values.double() + model.log_partition()["log_z"]
    ends = []
    for seed in range(6):
        model.seed = seed
        ais = model.log_partition("ais")
        implied = log_p_star - model.raise_log_likelihood(v)
        raise_end, raise_se = float(implied.mean()), float(implied.std() / math.sqrt(len(implied)))
        ends.append((ais["log_z"], raise_end))
        assert ais["log_z"] - 2 * ais["stderr"] < log_z < raise_end, (seed, ais, log_z, raise_end)
        assert raise_end - log_z > 3 * raise_se
    assert len(set(ends)) == 6  # the seeds drew different chains


# --------------------------------------------------------------------------- the metric


def _context(model, model_name, x, eval_examples=0) -> MetricContext:
    split = Split(torch.as_tensor(x, dtype=torch.float32))
    dspec = spec(x.shape[1])
    dataset = Dataset(dspec, Splits(split, split, split), provenance="test")
    profile = get_profile("smoke").__class__(**{**vars(get_profile("smoke")), "eval_examples": eval_examples})
    return MetricContext(model=model, model_spec=SPECS[model_name], dataset=dataset, profile=profile,
                         device=torch.device("cpu"), seed=0)


def test_nll_upper_is_the_raise_nll_with_a_control_variate():
    """With RAISE on every example, nll_upper is mean(-log p_raise) itself; on a subset, the control
    variate keeps it within a few standard errors of that, and nll_bracket is nll_upper - nll."""
    model, W, a, c, _ = rbm(16, 10, 0.8, seed=5, exact_max_units=4, ais_betas=200, ais_chains=50, raise_betas=200,
                            raise_examples=0)
    log_z, draw = exact_rbm(W, a, c)
    x = draw(400, np.random.default_rng(6))
    rows = {m.metric: m for m in compute_nll_bracket(_context(model, "rbm", x))}
    reference = -float(model.raise_log_likelihood(torch.as_tensor(x)).mean())
    ll = model.log_likelihood(torch.as_tensor(x, dtype=torch.float32))
    nll = -float(ll.values.double().mean())
    assert ll.kind is LikelihoodKind.ESTIMATE and ll.details["log_z_method"] == "ais"
    upper, width = rows["nll_upper"], rows["nll_bracket"]
    assert upper.value == pytest.approx(reference, abs=1e-4)
    assert upper.estimator == "estimate" and upper.n == 400 and upper.details["raise_examples"] == 400
    assert width.value == pytest.approx(upper.value - nll, abs=1e-6)
    assert width.details["log_z_raise"] - width.details["log_z_ais"] == pytest.approx(width.value, abs=1e-6)
    exact_nll = -float((ll.values.double() + ll.details["log_z"] - log_z).mean())
    assert nll < exact_nll < upper.value

    model.hp["raise_examples"] = 100
    subset = {m.metric: m for m in compute_nll_bracket(_context(model, "rbm", x))}["nll_upper"]
    assert subset.n == 100 and subset.details["raise_examples"] == 100
    assert abs(subset.value - upper.value) < 4 * subset.stderr


def test_nll_upper_repeats_an_exact_nll_with_width_zero():
    model, W, a, c, _ = rbm(10, 6, 0.8, seed=7)
    _, draw = exact_rbm(W, a, c)
    x = draw(200, np.random.default_rng(8))
    rows = {m.metric: m for m in compute_nll_bracket(_context(model, "rbm", x))}
    nll = -float(model.log_likelihood(torch.as_tensor(x, dtype=torch.float32)).values.double().mean())
    assert rows["nll_upper"].estimator == "exact" and rows["nll_upper"].value == pytest.approx(nll)
    assert rows["nll_bracket"].value == 0.0


def test_nll_upper_applies_to_the_ebm_family_only():
    metric = nll_bracket_metric()
    assert metric.applies(SPECS["rbm"], spec(4)) is None
    other = SPECS["rbm"].__class__(name="other", family="flow", factory=None, data_kinds=[DataKind.BINARY],
                                   capabilities=[Capability.SAMPLE])
    assert "ebm family" in metric.applies(other, spec(4))
    assert {o.name for o in metric.outputs} == {"nll_upper", "nll_bracket"}
