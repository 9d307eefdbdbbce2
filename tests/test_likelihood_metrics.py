"""The likelihood metric's nll_gap: a paired estimate, mean over test examples of
log p_true(x) - log p_model(x), checked against brute force and the analytic KL of two Gaussians;
the true log-density of the test split computed once per run; estimates and bounds stay marked;
gmm on 8gaussians at quick reaches a standard error below 0.003 nats through the runner."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness import Capability, DataKind, DatasetSpec, LikelihoodKind, LogLikelihood, Model, ModelSpec
from harness.contracts import Dataset, MetricContext, Split, Splits
from harness.data import provenance_hash
from harness.profiles import get_profile
from harness_plugins.metrics import likelihood

MU = (0.3, -0.2)


class Calls:
    def __init__(self, fn):
        self.fn, self.count = fn, 0

    def __call__(self, x):
        self.count += 1
        return self.fn(x)


def standard_normal_log_density(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return -0.5 * (x**2).sum(1) - math.log(2 * math.pi)


def normal_dataset(log_density=standard_normal_log_density, entropy=1 + math.log(2 * math.pi), n_test=4000):
    rng = np.random.default_rng(0)
    splits = Splits(*(Split(torch.as_tensor(rng.standard_normal((n, 2)), dtype=torch.float32))
                      for n in (500, 100, n_test)))
    spec = DatasetSpec(name="normal2d", kind=DataKind.CONTINUOUS, event_shape=(2,), load=lambda root: splits,
                       log_density=log_density, entropy=entropy)
    return Dataset(spec, splits, provenance_hash(splits, "normal2d:1"))


class Shifted(Model):
    """N(mu, I) in 2-D (mu = 0 with ``truth`` set: the dataset's own density), of a chosen kind."""

    def __init__(self, mu=MU, kind=LikelihoodKind.EXACT, shared_stderr=0.0):
        self.mu = torch.tensor(mu, dtype=torch.float64)
        self.kind, self.shared_stderr = kind, shared_stderr

    def log_likelihood(self, x, labels=None):
        x = x.double()
        values = -0.5 * ((x - self.mu) ** 2).sum(1) - math.log(2 * math.pi)
        return LogLikelihood(values, self.kind, shared_stderr=self.shared_stderr)


def context(model, dataset, run_cache=None, profile="quick") -> MetricContext:
    spec = ModelSpec(name="shifted", family="test", factory=lambda s, h: model, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=[Capability.SAMPLE], likelihood=model.kind)
    return MetricContext(model=model, model_spec=spec, dataset=dataset, profile=get_profile(profile),
                         device=torch.device("cpu"), seed=0, run_cache={} if run_cache is None else run_cache)


def rows(ctx) -> dict:
    spec = next(iter(_registered()))
    return {m.metric: spec.bind(m) for m in spec.compute(ctx)}


def _registered():
    found = []
    likelihood.harness_register_metrics(found.append)
    return found


def test_a_model_with_the_true_density_has_gap_zero_and_stderr_zero():
    gap = rows(context(Shifted(mu=(0.0, 0.0)), normal_dataset()))["nll_gap"]
    assert gap.value == 0.0 and gap.stderr == 0.0
    assert gap.details["paired"] is True and gap.estimator == "exact" and gap.n == 4000


def test_paired_gap_equals_brute_force_and_the_analytic_kl():
    """g_i = log N(x_i; 0, I) - log N(x_i; mu, I) = (|mu|^2 - 2 x_i . mu) / 2, computed here in numpy;
    its mean estimates KL(N(0, I) || N(mu, I)) = |mu|^2 / 2 and its standard error is
    std(x . mu) / sqrt(n), about |mu| / sqrt(n) = 0.36 / sqrt(n), below the NLL's own (about 1 / sqrt(n))."""
    dataset = normal_dataset()
    measured = rows(context(Shifted(), dataset))
    x = dataset.test.x.double().numpy()
    mu = np.array(MU)
    g = (mu @ mu - 2 * x @ mu) / 2
    gap = measured["nll_gap"]
    assert gap.value == pytest.approx(g.mean(), abs=1e-12)
    assert gap.stderr == pytest.approx(g.std(ddof=1) / math.sqrt(len(g)), rel=1e-9)
    kl = float(mu @ mu / 2)
    assert abs(gap.value - kl) < 4 * gap.stderr
    assert gap.stderr < 0.5 * measured["nll"].stderr
    assert gap.details["true_nll"] == pytest.approx(float(-standard_normal_log_density(dataset.test.x).mean()))


@pytest.mark.parametrize("kind", [LikelihoodKind.BOUND, LikelihoodKind.ESTIMATE])
def test_bounds_and_estimates_stay_marked_and_carry_their_shared_error(kind):
    dataset = normal_dataset()
    exact = rows(context(Shifted(), dataset))["nll_gap"]
    other = rows(context(Shifted(kind=kind, shared_stderr=0.02), dataset))["nll_gap"]
    assert other.estimator == kind.value and other.value == exact.value
    assert other.stderr == pytest.approx(math.hypot(exact.stderr, 0.02), rel=1e-12)


def test_the_true_log_density_of_the_test_split_is_computed_once_per_run():
    density = Calls(standard_normal_log_density)
    dataset = normal_dataset(log_density=density)
    cache: dict = {}
    for mu in ((0.1, 0.0), (0.0, 0.4), MU):
        rows(context(Shifted(mu=mu), dataset, run_cache=cache))
    assert density.count == 1


def test_a_dataset_with_only_its_entropy_gets_the_unpaired_gap():
    dataset = normal_dataset(log_density=None)
    measured = rows(context(Shifted(), dataset))
    gap, nll = measured["nll_gap"], measured["nll"]
    assert gap.details["paired"] is False
    assert gap.value == pytest.approx(nll.value - (1 + math.log(2 * math.pi)), abs=1e-12)
    assert gap.stderr == pytest.approx(nll.stderr, rel=1e-12)


def test_a_true_density_that_is_not_finite_on_the_test_split_fails_clearly():
    def broken(x):
        out = standard_normal_log_density(x)
        out[:3] = -math.inf
        return out

    with pytest.raises(ValueError, match="not finite at 3 of its own test examples"):
        rows(context(Shifted(), normal_dataset(log_density=broken)))


@pytest.mark.slow
def test_gmm_on_8gaussians_at_quick_has_a_paired_gap_stderr_below_three_millinats(tmp_path):
    """The issue's target, through the runner at the quick profile: the unpaired gap's standard
    error was 0.0138 nats; the paired one is below 0.003, and the gap itself is small and positive
    within its error (a 16-component GMM fitted to 8 Gaussians)."""
    from harness.host import get_host
    from harness.runner import Runner

    runner = Runner(get_host(), get_profile("quick"), tmp_path, seeds=[0], metrics=["nll"])
    store, summary = runner.run(runner.plan(["gmm"], ["8gaussians"], False))
    df = store.results()
    store.close()
    assert summary["ok"] == 1
    gap = df.query("metric == 'nll_gap'").iloc[0]
    nll = df.query("metric == 'nll'").iloc[0]
    assert gap["stderr"] < 0.003 < nll["stderr"]
    assert -3 * gap["stderr"] < gap["value"] < 0.02
    assert gap["estimator"] == "exact"
