"""Tests of the sample-based metrics: the Parzen estimator against scikit-learn's kernel density
and a known Gaussian, mode coverage on exact 8gaussians samples, and conditional accuracy with a
perfect and a label-ignoring sampler."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from harness import Capability, DatasetSpec, LikelihoodKind, MetricContext, Model, ModelSpec, Split
from harness.contracts import Dataset, FeatureExtractorSpec, Splits
from harness.profiles import Profile
from harness_plugins.metrics import samples as sm

torch.set_num_threads(1)


def _profile(eval_examples=0):
    return Profile("test", job_timeout_s=60, eval_examples=eval_examples, sample_batch=64)


def _metrics():
    found = []
    sm.harness_register_metrics(found.append)
    return {m.name: m for m in found}


def _measure(metric, ctx, n):
    """The metric's measurements from ``n`` samples (the count its declaration gives a profile), bound to
    its declarations as the runner binds them (unit, direction, estimator and identity filled in; an
    undeclared or contradicting one raises)."""
    return [metric.bind(m) for m in getattr(sm, metric.name)(ctx, n)]


SAMPLER_SPEC = ModelSpec(name="sampler", family="test", factory=None, data_kinds=["continuous", "discrete", "binary"],
                         capabilities=[Capability.SAMPLE, Capability.CONDITIONAL])
LIKELIHOOD_SPEC = ModelSpec(name="exact", family="test", factory=None, data_kinds=["continuous"],
                            likelihood=LikelihoodKind.EXACT)


class FunctionSampler(Model):
    def __init__(self, fn):
        self.fn = fn
        self.calls = []

    def sample(self, n, generator, labels=None):
        out = self.fn(n, generator, labels)
        self.calls.append((labels, out))
        return out


def _context(model, dataset, eval_examples=0, extractors=None, run_cache=None, seed=0):
    return MetricContext(model=model, model_spec=SAMPLER_SPEC, dataset=dataset, profile=_profile(eval_examples),
                         device=torch.device("cpu"), seed=seed, feature_extractors=extractors or {},
                         run_cache={} if run_cache is None else run_cache)


def _dataset(train, val, test, name="data", kind="continuous", levels=None, classes=0, tags=(), extractor=None):
    splits = Splits(train, val, test)
    spec = DatasetSpec(name=name, kind=kind, event_shape=tuple(train.x.shape[1:]), levels=levels,
                       num_classes=classes, load=lambda root: splits, tags=tags, feature_extractor=extractor)
    return Dataset(spec, splits, provenance=f"test-{name}")


# ----------------------------------------------------------------------------- Parzen


def test_parzen_log_density_matches_brute_force_scipy():
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    samples, x = rng.normal(size=(300, 5)), rng.normal(size=(40, 5)) * 1.5
    sigmas = [0.3, 1.0]
    ours = sm.parzen_log_density(torch.as_tensor(samples), torch.as_tensor(x), sigmas).numpy()
    for j, sigma in enumerate(sigmas):
        per_kernel = np.stack([stats.multivariate_normal(s, sigma**2 * np.eye(5)).logpdf(x) for s in samples], 1)
        ref = logsumexp(per_kernel, axis=1) - math.log(len(samples))
        np.testing.assert_allclose(ours[:, j], ref, rtol=1e-9, atol=1e-8)


def test_parzen_approaches_the_true_log_likelihood_of_a_gaussian():
    gen = torch.Generator().manual_seed(0)
    dim = 2
    data = lambda n: torch.randn(n, dim, generator=gen)  # noqa: E731
    ds = _dataset(Split(data(2000)), Split(data(1000)), Split(data(2000)), name="gauss2")
    true_nll = float(-torch.as_tensor(stats.multivariate_normal(np.zeros(dim)).logpdf(ds.test.x.double().numpy())).mean())
    model = FunctionSampler(lambda n, g, labels: torch.randn(n, dim, generator=g))
    metric = _metrics()["parzen_nll"]
    errors = {}
    for n in (30, 300, 3000):
        (m,) = _measure(metric, _context(model, ds), n)
        assert m.metric == "parzen_nll" and m.estimator == "estimate" and m.details["samples"] == n
        assert not m.details["sigma_at_grid_edge"] and not m.details["dequantized"]
        errors[n] = abs(m.value - true_nll)
    assert errors[3000] < errors[300] < errors[30]
    assert errors[3000] < 0.05  # nats; the stderr of the test mean itself is ~0.02


def test_parzen_on_discrete_data_subtracts_d_log_k():
    # Uniform bits: P(x) = 2^-D exactly. In the dequantised space the data is uniform on [0,1)^D with
    # density 1, so the estimate is D ln 2 plus the kernel's (small) edge loss.
    dim = 3
    gen = torch.Generator().manual_seed(0)
    bits = lambda n: torch.randint(0, 2, (n, dim), generator=gen).float()  # noqa: E731
    ds = _dataset(Split(bits(500)), Split(bits(1000)), Split(bits(1000)), kind="binary")
    model = FunctionSampler(lambda n, g, labels: torch.randint(0, 2, (n, dim), generator=g).float())
    (m,) = _measure(_metrics()["parzen_nll"], _context(model, ds), 5000)
    assert m.details["dequantized"]
    assert dim * math.log(2) - 4 * m.stderr < m.value < dim * math.log(2) + 0.25


def test_parzen_scores_the_evaluation_split_and_chooses_sigma_on_the_validation_subset():
    """With eval_examples smaller than the splits, the test examples are ctx.evaluation_split() (a fixed
    permutation's first n, not the first n rows) and the bandwidth is chosen on the evaluation subset
    of the validation split: recomputed here from those examples, the numbers agree exactly."""
    gen = torch.Generator().manual_seed(3)
    # rows sorted by their first coordinate: the first n rows differ clearly from a random subset
    data = lambda n: torch.randn(n, 2, generator=gen).sort(0).values  # noqa: E731
    ds = _dataset(Split(data(500)), Split(data(400)), Split(data(600)), name="sorted")
    model = FunctionSampler(lambda n, g, labels: torch.randn(n, 2, generator=g))
    ctx = _context(model, ds, eval_examples=100)
    (m,) = _measure(_metrics()["parzen_nll"], ctx, 300)
    test, val = ctx.evaluation_split().x.double(), ctx.evaluation_split(100, split="val").x.double()
    assert m.n == 100 and m.details["val_examples"] == 100
    assert not torch.equal(test, ds.test.x[:100].double())
    _, samples = model.calls[0]
    scale = float(val.var(0, unbiased=False).mean().sqrt())
    sigma, _ = sm.select_bandwidth(samples.double(), val, scale * sm.PARZEN_RELATIVE_GRID)
    expected = -sm.parzen_log_density(samples.double(), test, [sigma])[:, 0]
    assert m.details["sigma"] == sigma and m.value == pytest.approx(float(expected.mean()), rel=1e-12)


def test_sample_metric_declarations():
    specs = _metrics()
    outputs = {o.name: o for spec in specs.values() for o in spec.outputs}
    assert set(outputs) == {"parzen_nll", "modes_covered", "high_quality_share", "conditional_accuracy"}
    assert specs["mode_coverage"].output_names == ("modes_covered", "high_quality_share")
    assert outputs["modes_covered"].integer and outputs["modes_covered"].unit == "modes"
    assert all(o.kind == "quality" and not o.sample_count_in_id for o in outputs.values())
    assert outputs["parzen_nll"].estimator == "estimate" and not outputs["parzen_nll"].higher_is_better
    assert outputs["parzen_nll"].order == 50 and outputs["parzen_nll"].tolerance.absolute == 0.05
    for name in ("modes_covered", "high_quality_share", "conditional_accuracy"):
        assert outputs[name].estimator == "statistic" and outputs[name].higher_is_better and outputs[name].order > 90


def test_parzen_applies_only_to_sample_only_models():
    metric = _metrics()["parzen_nll"]
    spec = DatasetSpec(name="d", kind="continuous", event_shape=(2,), load=None)
    assert metric.incompatibility(SAMPLER_SPEC, spec) is None
    assert metric.incompatibility(LIKELIHOOD_SPEC, spec) is not None


# ----------------------------------------------------------------------------- mode coverage

EIGHT_STD = 0.5 / 1.414
EIGHT_CENTRES = np.array([(math.cos(a), math.sin(a)) for a in np.arange(8) * math.pi / 4]) * 4 / 1.414


def _eight_gaussians(n, rng, modes=None):
    idx = rng.integers(0, 8, n) if modes is None else rng.choice(modes, n)
    return torch.as_tensor(EIGHT_CENTRES[idx] + EIGHT_STD * rng.standard_normal((n, 2)), dtype=torch.float32)


@pytest.fixture(scope="module")
def eight_gaussians():
    rng = np.random.default_rng(0)
    return _dataset(Split(_eight_gaussians(5000, rng)), Split(_eight_gaussians(500, rng)),
                    Split(_eight_gaussians(500, rng)), name="8gaussians")


def test_mode_coverage_of_the_true_distribution(eight_gaussians):
    metric = _metrics()["mode_coverage"]
    model = FunctionSampler(lambda n, g, labels: _eight_gaussians(n, np.random.default_rng(int(g.initial_seed()))))
    n = 2000
    cache = {}
    covered, share = _measure(metric, _context(model, eight_gaussians, run_cache=cache), n)
    assert covered.metric == "modes_covered" and covered.value == 8
    assert covered.unit == "modes" and covered.estimator == "statistic" and covered.higher_is_better
    assert covered.id == "modes_covered" and share.unit == "fraction" and share.n == n
    # KMeans found the true centres and spreads
    centres, stds = next(iter(cache.values()))
    dist = np.sqrt(((centres[:, None] - EIGHT_CENTRES[None]) ** 2).sum(-1)).min(1)
    assert dist.max() < 0.05 and np.abs(stds / EIGHT_STD - 1).max() < 0.08
    # share within 3 sd of a 2-D isotropic Gaussian: 1 - exp(-9/2)
    p = 1 - math.exp(-4.5)
    assert share.metric == "high_quality_share"
    assert abs(share.value - p) < 4 * math.sqrt(p * (1 - p) / n) + 0.005


def test_mode_coverage_of_one_mode_and_of_noise(eight_gaussians):
    metric = _metrics()["mode_coverage"]
    one = FunctionSampler(lambda n, g, labels: _eight_gaussians(n, np.random.default_rng(1), modes=[3]))
    covered, share = _measure(metric, _context(one, eight_gaussians), 2000)
    assert covered.value == 1 and share.value > 0.97
    three = FunctionSampler(lambda n, g, labels: _eight_gaussians(n, np.random.default_rng(2), modes=[0, 2, 5]))
    covered, _ = _measure(metric, _context(three, eight_gaussians), 2000)
    assert covered.value == 3
    # broad noise: few samples are high quality (reference: the area of 8 discs of radius 3 sd
    # over the sampled square, about 8 pi 1.06^2 / 100 = 0.28)
    noise = FunctionSampler(lambda n, g, labels: torch.rand(n, 2, generator=g) * 10 - 5)
    _, share = _measure(metric, _context(noise, eight_gaussians), 4000)
    ref = 8 * math.pi * (3 * EIGHT_STD) ** 2 / 100
    assert abs(share.value - ref) < 4 * math.sqrt(ref * (1 - ref) / 4000) + 0.01


def test_mode_coverage_applies_by_name_or_tag():
    metric = _metrics()["mode_coverage"]
    spec = lambda name, tags=(): DatasetSpec(name=name, kind="continuous", event_shape=(2,), load=None, tags=tags)  # noqa: E731
    assert metric.incompatibility(SAMPLER_SPEC, spec("8gaussians")) is None
    assert metric.incompatibility(SAMPLER_SPEC, spec("rings", ("toy2d", "modes:5"))) is None
    assert metric.incompatibility(SAMPLER_SPEC, spec("moons", ("toy2d",))) is not None
    assert sm.known_modes(spec("rings", ("modes:5",))) == 5 and sm.known_modes(spec("8gaussians")) == 8


# ----------------------------------------------------------------------------- conditional accuracy


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return _dataset(Split(x[:1200], y[:1200]), Split(x[1200:1400], y[1200:1400]), Split(x[1400:], y[1400:]),
                    name="digits", kind="discrete", levels=17, classes=10, extractor="digits-classifier")


def _from_test_split(dataset, honour_labels):
    test = dataset.test

    def sample(n, generator, labels):
        if honour_labels:
            picks = [torch.nonzero(test.y == c)[:, 0] for c in range(10)]
            idx = torch.stack([picks[int(c)][torch.randint(0, len(picks[int(c)]), (1,), generator=generator)][0]
                               for c in labels])
        else:
            idx = torch.randint(0, len(test), (n,), generator=generator)
        return test.x[idx]

    return sample


def test_conditional_accuracy_of_a_perfect_sampler(digits):
    from sklearn.linear_model import LogisticRegression

    model = FunctionSampler(_from_test_split(digits, honour_labels=True))
    (m,) = _measure(_metrics()["conditional_accuracy"], _context(model, digits), 1000)
    labels, samples = model.calls[0]
    assert m.n == 1000 and torch.equal(labels, torch.arange(10).repeat_interleave(100))
    # independent reference: a logistic regression fitted here, scored on the same samples
    ref_clf = LogisticRegression(max_iter=1000).fit(digits.train.x.reshape(1200, -1).numpy() / 16, digits.train.y.numpy())
    ref = float((ref_clf.predict(samples.reshape(len(samples), -1).numpy() / 16) == labels.numpy()).mean())
    assert abs(m.value - ref) <= 0.01 and m.value > 0.9
    assert "logistic regression" in m.details["classifier"]
    assert abs(m.details["classifier_test_accuracy"] - float((ref_clf.predict(
        digits.test.x.reshape(len(digits.test), -1).numpy() / 16) == digits.test.y.numpy()).mean())) <= 0.01
    assert m.details["classifier_test_examples"] == len(digits.test)  # eval_examples=0: the whole test split
    assert m.unit == "fraction" and m.estimator == "statistic" and m.higher_is_better
    assert abs(m.stderr - math.sqrt(m.value * (1 - m.value) / 1000)) < 1e-12


def test_conditional_accuracy_of_a_label_ignoring_sampler_is_chance(digits):
    model = FunctionSampler(_from_test_split(digits, honour_labels=False))
    (m,) = _measure(_metrics()["conditional_accuracy"], _context(model, digits), 2000)
    # samples independent of the asked label with equal counts per label: E[accuracy] = 1/C exactly
    assert abs(m.value - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 2000)


class OracleExtractor:
    """A 'classifier extractor' that knows the true label of every digits image (lookup by bytes)."""

    fingerprint = "oracle"

    def __init__(self, dataset):
        self.table = {}
        for split in (dataset.train, dataset.val, dataset.test):
            for x, y in zip(split.x, split.y):
                self.table[x.numpy().tobytes()] = int(y)

    def features(self, x):
        return x.reshape(x.shape[0], -1)

    def classify(self, x):
        logits = torch.zeros(x.shape[0], 10)
        for i, row in enumerate(x):
            logits[i, self.table[row.numpy().tobytes()]] = 1.0
        return logits


def test_conditional_accuracy_uses_the_datasets_classifier_extractor(digits):
    builds = []
    spec = FeatureExtractorSpec(name="digits-classifier",
                                build=lambda ds, device: builds.append(1) or OracleExtractor(ds))
    model = FunctionSampler(_from_test_split(digits, honour_labels=True))
    cache = {}
    (m,) = _measure(_metrics()["conditional_accuracy"],
                    _context(model, digits, extractors={spec.name: spec}, run_cache=cache), 500)
    assert m.value == 1.0 and "digits-classifier" in m.details["classifier"]
    assert m.details["classifier_test_accuracy"] == 1.0
    _measure(_metrics()["conditional_accuracy"], _context(model, digits, extractors={spec.name: spec},
                                                          run_cache=cache), 500)
    assert len(builds) == 1  # built once per run
    # an extractor that reports itself unusable is not used; the reason is recorded
    broken = FeatureExtractorSpec(name="digits-classifier", build=None, check=lambda root: "weights missing")
    (m,) = _measure(_metrics()["conditional_accuracy"],
                    _context(model, digits, extractors={broken.name: broken}), 500)
    assert "logistic" in m.details["classifier"] and m.details["extractor_not_used"] == "weights missing"

    def corrupt(ds, device):
        raise OSError("checksum mismatch")

    failing = FeatureExtractorSpec(name="digits-classifier", build=corrupt)
    (m2,) = _measure(_metrics()["conditional_accuracy"],
                     _context(model, digits, extractors={failing.name: failing}), 500)
    assert "checksum mismatch" in m2.details["extractor_not_used"] and m2.value == m.value


def test_conditional_accuracy_requires_conditional_models_on_labelled_data():
    metric = _metrics()["conditional_accuracy"]
    labelled = DatasetSpec(name="d", kind="binary", event_shape=(4,), num_classes=3, load=None)
    unlabelled = DatasetSpec(name="u", kind="binary", event_shape=(4,), load=None)
    unconditional = ModelSpec(name="u", family="t", factory=None, data_kinds=["binary"])
    assert metric.incompatibility(SAMPLER_SPEC, labelled) is None
    assert metric.incompatibility(SAMPLER_SPEC, unlabelled) is not None
    assert metric.incompatibility(unconditional, labelled) is not None
