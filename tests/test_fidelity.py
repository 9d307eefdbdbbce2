"""Fidelity metrics: agreement with torch-fidelity called directly and with scipy (fid, kid, precision,
recall) and with the prdc package (density, coverage), the two-Gaussian closed form, the reference cache (hit, stale on dataset or extractor change), M + 1 feature passes,
degenerate samples, and a missing Inception weights file."""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.linalg
import torch

import harness_plugins.datasets.digits as digits_plugin
import harness_plugins.metrics.classifiers as classifiers
import harness_plugins.metrics.extractors as extractors
import harness_plugins.metrics.fidelity as fidelity
from harness_plugins.metrics.fidelity import estimators, references
from harness import Capability, DataKind, Dataset, DatasetSpec, MetricContext, Model, ModelSpec, Split
from harness.contracts import Splits
from harness.data import provenance_hash
from harness.profiles import Profile


def registered(hook) -> dict:
    specs = {}
    hook(register=lambda spec: specs.__setitem__(spec.name, spec))
    return specs


EXTRACTORS = registered(extractors.harness_register_feature_extractors)


class PoolModel(Model):
    """A 'model' whose samples are the rows of a fixed tensor, handed out in order."""

    def __init__(self, pool: torch.Tensor):
        self.pool = pool
        self.cursor = 0

    def sample(self, n, generator, labels=None):
        out = self.pool[self.cursor:self.cursor + n]
        self.cursor += n
        return out


def model_spec(name="pool") -> ModelSpec:
    return ModelSpec(name=name, family="test", factory=lambda spec, hp: None,
                     data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
                     capabilities=[Capability.SAMPLE])


TEST_PROFILE = Profile("test", job_timeout_s=60, eval_examples=0, sample_batch=10_000)


@dataclass
class SizedContext(MetricContext):
    """A metric context with the sample count ``n`` the test gives the metric (in a run, the count its
    declaration gives the job's profile)."""

    n: int = 0


def make_dataset(name, train, test, extractor="raw", kind=DataKind.CONTINUOUS, levels=None, provenance=None):
    splits = Splits(Split(train.float()), Split(test[:2].float()), Split(test.float()))
    spec = DatasetSpec(name=name, kind=kind, levels=levels, event_shape=tuple(train.shape[1:]),
                       load=lambda root=None: splits, feature_extractor=extractor)
    return Dataset(spec, splits, provenance or provenance_hash(splits))


def context(model, dataset, n, cache_dir=None, run_cache=None, seed=0, name="pool", data_root=None):
    return SizedContext(model=model, model_spec=model_spec(name), dataset=dataset, profile=TEST_PROFILE,
                        device=torch.device("cpu"), seed=seed, cache_dir=cache_dir, data_root=data_root,
                        feature_extractors=EXTRACTORS, run_cache={} if run_cache is None else run_cache, n=n)


SPECS = {}
fidelity.harness_register_metrics(lambda spec: SPECS.__setitem__(spec.name, spec))


def value(metric, ctx):
    """The metric's measurement, bound to its declaration as the runner binds it."""
    (m,) = fidelity.compute_metric(metric, ctx, ctx.n)
    return SPECS[metric].bind(m)


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The Frechet distance by the textbook formula, with scipy's matrix square root."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def gaussian_fid_2d(m1, s1, m2, s2) -> float:
    """Closed form ||m1-m2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) for 2x2 covariances, using
    Tr sqrt(M) = sqrt(Tr M + 2 sqrt(det M)) for a 2x2 M with positive eigenvalues."""
    m = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def exact_moment_gaussian(n, mean, cov, seed) -> torch.Tensor:
    """n points whose sample mean and (ddof=1) covariance are exactly ``mean`` and ``cov``."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return torch.from_numpy(mean + z @ np.linalg.cholesky(cov).T)


@pytest.fixture(autouse=True)
def fresh_counters():
    references.FEATURE_PASSES.clear()
    references.CACHE_EVENTS.clear()


@pytest.fixture(scope="module")
def digits():
    spec = registered(digits_plugin.harness_register_datasets)["digits"]
    splits = spec.load(None)
    return Dataset(spec, splits, provenance_hash(splits))


def corrupted_digits(digits, n, seed=0) -> torch.Tensor:
    """Training digits with a fraction of pixels replaced by random levels: a plausible imperfect model."""
    g = torch.Generator().manual_seed(seed)
    x = digits.train.x[:n].clone()
    mask = torch.rand(x.shape, generator=g) < 0.15
    x[mask] = torch.randint(0, 17, x.shape, generator=g).float()[mask]
    return x


# ----------------------------------------------------------------------------- agreement


def test_digits_metrics_equal_torch_fidelity_directly_and_fid_equals_scipy(digits):
    import torch_fidelity

    n = 300
    samples = corrupted_digits(digits, n)
    ctx = context(PoolModel(samples), digits, n)
    got = {m: value(m, ctx) for m in fidelity.METRICS}

    extractor = ctx.run_cache[("fidelity:extractor", "digits-classifier", "digits", digits.provenance, "cpu")]
    reference_x = references.split_subset(digits.test.x, n)
    direct = torch_fidelity.calculate_metrics(
        input1=extractors.RowsDataset(extractor.torch_fidelity_input(samples)),
        input2=extractors.RowsDataset(extractor.torch_fidelity_input(reference_x)),
        fid=True, kid=True, prc=True, feature_extractor=extractor.torch_fidelity_name, cuda=False, cache=False,
        batch_size=extractor.batch_size, **estimators.torch_fidelity_options(n, len(reference_x)),
    )
    assert got["fid"].value == pytest.approx(direct[torch_fidelity.KEY_METRIC_FID], rel=1e-6)
    assert got["kid"].value == pytest.approx(direct[torch_fidelity.KEY_METRIC_KID_MEAN], rel=1e-6)
    assert got["kid"].stderr == pytest.approx(direct[torch_fidelity.KEY_METRIC_KID_STD], rel=1e-6)
    assert got["precision"].value == pytest.approx(direct[torch_fidelity.KEY_METRIC_PRECISION], rel=1e-6)
    assert got["recall"].value == pytest.approx(direct[torch_fidelity.KEY_METRIC_RECALL], rel=1e-6)

    f_gen = extractor.features(samples).double().numpy()
    f_ref = extractor.features(reference_x).double().numpy()
    assert got["fid"].value == pytest.approx(scipy_fid(f_gen, f_ref), rel=1e-4)

    fid = got["fid"]
    assert fid.n == n and fid.id == f"fid@{n}" and fid.details["n_reference"] == n and "id" not in fid.details
    assert {m.id for m in got.values()} == {f"{metric}@{n}" for metric in fidelity.METRICS}
    assert fid.details["extractor"] == "digits-classifier" and fid.details["reference"] == "test"
    assert fid.details["feature_dim"] == classifiers.RECIPES["digits-classifier"].feature_dim


def test_raw_fid_equals_torch_fidelity_and_scipy_on_2d_data():
    import torch_fidelity

    rng = np.random.default_rng(5)
    train = torch.from_numpy(rng.standard_normal((600, 2)))
    test = torch.from_numpy(rng.standard_normal((400, 2)) * [1.0, 2.0] + [0.5, 0.0])
    samples = torch.from_numpy(rng.standard_normal((400, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]]))
    dataset = make_dataset("toy", train, test)
    ctx = context(PoolModel(samples), dataset, 400)
    got = {m: value(m, ctx) for m in fidelity.METRICS}
    direct = torch_fidelity.calculate_metrics(
        input1=extractors.RowsDataset(samples), input2=extractors.RowsDataset(test.float()), fid=True, kid=True,
        prc=True, feature_extractor="harness-raw", cuda=False, cache=False, **estimators.torch_fidelity_options(400, 400))
    assert got["kid"].details["kid_subset_size"] == 200
    assert got["kid"].value == pytest.approx(direct[torch_fidelity.KEY_METRIC_KID_MEAN], rel=1e-6)
    assert got["kid"].stderr == pytest.approx(direct[torch_fidelity.KEY_METRIC_KID_STD], rel=1e-6)
    assert got["precision"].value == pytest.approx(direct[torch_fidelity.KEY_METRIC_PRECISION], rel=1e-6)
    assert got["recall"].value == pytest.approx(direct[torch_fidelity.KEY_METRIC_RECALL], rel=1e-6)
    fid = got["fid"].value
    assert fid == pytest.approx(direct[torch_fidelity.KEY_METRIC_FID], rel=1e-6)
    assert fid == pytest.approx(scipy_fid(samples.numpy(), test.float().double().numpy()), rel=1e-4)


def _prdc_reference(f_gen: np.ndarray, f_ref: np.ndarray) -> dict:
    from prdc import compute_prdc

    return compute_prdc(real_features=f_ref, fake_features=f_gen, nearest_k=estimators.DC_NEIGHBORHOOD)


@pytest.mark.parametrize("dim,n1,n2,shift", [(2, 3000, 5000, 0.05), (2, 400, 400, 0.5), (5, 1500, 1200, 0.0),
                                           (9, 800, 900, 0.1)])
def test_kid_through_the_feature_map_equals_torch_fidelity_to_rounding(dim, n1, n2, shift):
    """Low-dimensional float64 features take the explicit feature map: same subsets, same estimator,
    the kernel sums as inner products; torch-fidelity's own kid_features_to_metric is the reference."""
    from torch_fidelity.metric_kid import kernel_poly, kid_features_to_metric

    rng = np.random.default_rng(dim)
    x = torch.from_numpy(rng.standard_normal((n1, dim)) * 3)
    y = torch.from_numpy(rng.standard_normal((n2, dim)) * 3 + shift)
    assert estimators.poly_feature_dim(dim, 3) <= estimators.KID_FEATURE_MAP_MAX  # the path under test
    phi = estimators.poly_feature_map(x.numpy()[:50], 3, 1.0 / dim, 1.0)
    assert phi @ phi.T == pytest.approx(kernel_poly(x.numpy()[:50], x.numpy()[:50]), rel=1e-12)
    options = estimators.torch_fidelity_options(n1, n2)
    mean, std = estimators.kernel_inception_distance(x, y, options)
    direct = kid_features_to_metric(x, y, **options)
    assert mean == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-9, abs=1e-12)
    assert std == pytest.approx(direct["kernel_inception_distance_std"], rel=1e-9)


def test_kid_of_float32_or_wide_features_keeps_the_kernel_matrix_path(monkeypatch):
    from torch_fidelity.metric_kid import kid_features_to_metric

    monkeypatch.setattr(estimators, "poly_feature_map", lambda *a: pytest.fail("feature map used"))
    rng = np.random.default_rng(1)
    float32 = [torch.from_numpy(rng.standard_normal((300, 2)) + s).float() for s in (0.0, 0.3)]
    wide = [torch.from_numpy(rng.standard_normal((300, 12)) + s) for s in (0.0, 0.3)]  # 1 + 12 + 144 + 1728 > 1000
    for x, y in (float32, wide):
        options = estimators.torch_fidelity_options(300, 300)
        mean, std = estimators.kernel_inception_distance(x, y, options)
        direct = kid_features_to_metric(x, y, **options)
        rel = 1e-4 if x.dtype == torch.float32 else 1e-9  # float32 sums in another order: rounding only
        assert mean == pytest.approx(direct["kernel_inception_distance_mean"], rel=rel)
        assert std == pytest.approx(direct["kernel_inception_distance_std"], rel=rel)


def test_density_and_coverage_equal_the_prdc_package_on_digits_and_raw_features(digits):
    """Naeem et al.'s own implementation (the ``prdc`` package, k = 5) on the same features: equal up
    to a ball boundary decided differently by rounding (one count in k M or in N)."""
    n = 300
    samples = corrupted_digits(digits, n)
    ctx = context(PoolModel(samples), digits, n)
    got = {m: value(m, ctx) for m in ("density", "coverage")}
    extractor = ctx.run_cache[("fidelity:extractor", "digits-classifier", "digits", digits.provenance, "cpu")]
    reference_x = references.split_subset(digits.test.x, n)
    direct = _prdc_reference(extractor.features(samples).double().numpy(),
                             extractor.features(reference_x).double().numpy())
    k = estimators.DC_NEIGHBORHOOD
    assert got["density"].value == pytest.approx(direct["density"], abs=1.01 / (k * n))
    assert got["coverage"].value == pytest.approx(direct["coverage"], abs=1.01 / len(reference_x))
    assert 0.2 < got["coverage"].value < 1 and 0.1 < got["density"].value
    assert got["density"].id == f"density@{n}" and got["coverage"].details["neighborhood"] == k == 5

    rng = np.random.default_rng(11)
    train = torch.from_numpy(rng.standard_normal((600, 2)))
    test = torch.from_numpy(rng.standard_normal((500, 2)))
    for shift in (0.0, 3.0):
        gen = torch.from_numpy(rng.standard_normal((400, 2)) + shift)
        ctx = context(PoolModel(gen), make_dataset("toy", train, test), 400)
        got = {m: value(m, ctx).value for m in ("density", "coverage")}
        direct = _prdc_reference(gen.numpy(), references.split_subset(test.float(), 400).double().numpy())
        assert got["density"] == pytest.approx(direct["density"], abs=1.01 / (k * 400))
        assert got["coverage"] == pytest.approx(direct["coverage"], abs=1.01 / 400)
        if shift == 0.0:  # samples like the data: density near 1, most balls hit
            assert 0.85 < got["density"] < 1.15 and got["coverage"] > 0.9
        else:  # shifted away: few samples in the data's balls, many balls empty
            assert got["density"] < 0.3 and got["coverage"] < 0.5


def test_density_and_coverage_of_far_away_samples_are_zero():
    dataset = toy_dataset()
    far = torch.full((200, 2), 100.0, dtype=torch.float64) + torch.randn(200, 2, dtype=torch.float64)
    ctx = context(PoolModel(far), dataset, 200)
    assert value("density", ctx).value == 0.0 and value("coverage", ctx).value == 0.0


# ----------------------------------------------------------------------------- closed form


M1, S1 = np.array([0.5, -1.0]), np.array([[2.0, 0.6], [0.6, 1.0]])
M2, S2 = np.array([-0.3, 0.4]), np.array([[0.7, -0.2], [-0.2, 1.5]])


def test_frechet_distance_of_exact_gaussian_statistics_matches_closed_form():
    got = estimators.frechet_distance({"mu": M1, "sigma": S1}, {"mu": M2, "sigma": S2})
    assert got == pytest.approx(gaussian_fid_2d(M1, S1, M2, S2), rel=1e-10)


def test_fid_through_the_harness_matches_closed_form_for_exact_moment_gaussians():
    n = 4000
    samples = exact_moment_gaussian(n, M1, S1, seed=1)
    test = exact_moment_gaussian(n, M2, S2, seed=2)
    dataset = make_dataset("gauss", exact_moment_gaussian(n, M2, S2, seed=3), test)
    fid = value("fid", context(PoolModel(samples), dataset, n)).value
    # the test split is stored as float32, which moves its moments by ~1e-8
    assert fid == pytest.approx(gaussian_fid_2d(M1, S1, M2, S2), rel=1e-5)


def test_noise_floor_row_is_train_against_test_fid():
    rng = np.random.default_rng(7)
    train = torch.from_numpy(rng.standard_normal((900, 2)) * [1.0, 0.5])
    test = torch.from_numpy(rng.standard_normal((700, 2)) * [1.0, 0.5])
    dataset = make_dataset("floor", train, test)
    n = 500
    rows = {r.metric: r for r in fidelity.reference_rows(dataset, n, EXTRACTORS)}
    tr = references.split_subset(dataset.train.x, n).double().numpy()
    te = references.split_subset(dataset.test.x, n).double().numpy()
    mu_tr, mu_te = tr.mean(0), te.mean(0)
    s_tr, s_te = np.cov(tr, rowvar=False), np.cov(te, rowvar=False)
    assert rows["fid"].value == pytest.approx(gaussian_fid_2d(mu_tr, s_tr, mu_te, s_te), rel=1e-8)
    assert rows["fid"].details["reference"] == "train_vs_test" and rows["fid"].n == n
    assert rows["fid"].id == f"fid@{n}" and rows["precision"].unit == "fraction"
    assert rows["kid"].estimator == "statistic"
    assert set(rows) == set(fidelity.METRICS) and all(r.finite for r in rows.values())


# ----------------------------------------------------------------------------- evaluation split


def test_the_reference_is_the_evaluation_split_of_the_test_split():
    """The reference examples are ctx.evaluation_split(n) (the examples every metric takes), not the
    first n rows; FID recomputed from exactly those examples agrees."""
    rng = np.random.default_rng(2)
    test = torch.from_numpy(np.sort(rng.standard_normal((500, 2)), axis=0))  # rows ordered: a prefix is biased
    dataset = make_dataset("sorted", torch.from_numpy(rng.standard_normal((500, 2))), test)
    samples = model_samples(4, n=150)
    ctx = context(PoolModel(samples), dataset, 150)
    reference = ctx.evaluation_split(150).x
    assert torch.equal(references.split_subset(dataset.test.x, 150), reference)
    assert not torch.equal(reference, dataset.test.x[:150])
    fid = value("fid", ctx)
    assert fid.details["n_reference"] == 150
    assert fid.value == pytest.approx(scipy_fid(samples.numpy(), reference.double().numpy()), rel=1e-4)


def test_cached_reference_is_recomputed_when_the_evaluation_subset_changes(tmp_path, monkeypatch):
    """The stamp carries a hash of the selected indices: a different subset never reuses statistics."""
    import harness.contracts.evaluation as contracts

    dataset = toy_dataset()  # 200 test examples, 100 used
    first = value("fid", context(PoolModel(model_samples(1, n=100)), dataset, 100, cache_dir=tmp_path)).value
    assert references.CACHE_EVENTS["computed"] == 2
    value("fid", context(PoolModel(model_samples(1, n=100)), dataset, 100, cache_dir=tmp_path))
    assert references.CACHE_EVENTS["disk"] == 2 and references.CACHE_EVENTS["stale"] == 0

    old_subset = references.split_subset(dataset.test.x, 100)
    monkeypatch.setattr(contracts, "EVALUATION_SUBSET_SEED", 1)
    ctx = context(PoolModel(model_samples(1, n=100)), dataset, 100, cache_dir=tmp_path)
    assert torch.equal(ctx.evaluation_split(100).x, references.split_subset(dataset.test.x, 100))
    assert not torch.equal(ctx.evaluation_split(100).x, old_subset)
    changed = value("fid", ctx).value
    assert references.CACHE_EVENTS["stale"] == 2 and references.CACHE_EVENTS["computed"] == 4
    uncached = value("fid", context(PoolModel(model_samples(1, n=100)), dataset, 100)).value
    assert changed == uncached and changed != first
    expected = scipy_fid(model_samples(1, n=100).numpy(), ctx.evaluation_split(100).x.double().numpy())
    assert changed == pytest.approx(expected, rel=1e-4)


# ----------------------------------------------------------------------------- caching and cost


def toy_dataset(shift=0.0, provenance=None):
    rng = np.random.default_rng(11)
    train = torch.from_numpy(rng.standard_normal((300, 2)))
    test = torch.from_numpy(rng.standard_normal((200, 2)) + shift)
    return make_dataset("toy", train, test, provenance=provenance)


def model_samples(seed, n=200):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 2)) * 1.2)


def test_reference_cache_hit_on_second_run_and_recomputed_when_stale(tmp_path):
    dataset = toy_dataset()
    first = value("fid", context(PoolModel(model_samples(1)), dataset, 200, cache_dir=tmp_path)).value
    assert references.FEATURE_PASSES["reference:test"] == 1
    assert references.CACHE_EVENTS["computed"] == 2  # test reference and train (noise floor)

    # a second run (fresh run cache): both references come from disk, no reference pass
    second = value("fid", context(PoolModel(model_samples(1)), dataset, 200, cache_dir=tmp_path)).value
    assert references.FEATURE_PASSES["reference:test"] == 1 and references.CACHE_EVENTS["disk"] == 2
    assert second == first

    # different data under the same name: stale stamp, recomputed, and the value is the fresh one
    changed = toy_dataset(shift=1.0)
    stale = value("fid", context(PoolModel(model_samples(1)), changed, 200, cache_dir=tmp_path)).value
    uncached = value("fid", context(PoolModel(model_samples(1)), changed, 200)).value
    assert references.CACHE_EVENTS["stale"] == 2 and references.FEATURE_PASSES["reference:test"] == 3
    assert stale == uncached and stale != first

    # only the dataset hash changed (same arrays): still stale
    relabelled = toy_dataset(shift=1.0, provenance="another-hash")
    value("fid", context(PoolModel(model_samples(1)), relabelled, 200, cache_dir=tmp_path))
    assert references.CACHE_EVENTS["stale"] == 4
    blob = torch.load(next(tmp_path.glob("fidelity/toy-test-raw-n200.pt")), weights_only=True)
    assert blob["stamp"]["dataset_provenance"] == "another-hash"
    assert blob["stamp"]["torch_fidelity"] and blob["stamp"]["torch"] == torch.__version__


def test_reference_cache_invalidated_when_extractor_fingerprint_changes(tmp_path, monkeypatch):
    dataset = toy_dataset()
    value("fid", context(PoolModel(model_samples(1)), dataset, 200, cache_dir=tmp_path))
    assert references.CACHE_EVENTS["computed"] == 2
    original = extractors.build_raw

    def retrained(dataset, device):
        extractor = original(dataset, device)
        extractor.fingerprint = "a-different-fingerprint"
        return extractor

    monkeypatch.setitem(EXTRACTORS, "raw", extractors.FeatureExtractorSpec(name="raw", build=retrained))
    value("fid", context(PoolModel(model_samples(1)), dataset, 200, cache_dir=tmp_path))
    assert references.CACHE_EVENTS["stale"] == 2 and references.CACHE_EVENTS["computed"] == 4
    assert references.CACHE_EVENTS["disk"] == 0


def test_m_models_cost_m_plus_one_feature_passes():
    dataset = toy_dataset()
    run_cache = {}
    results = []
    for i in range(3):  # three model jobs, each running its six metrics one after the other
        ctx = context(PoolModel(model_samples(10 + i)), dataset, 200, run_cache=run_cache, name=f"model{i}")
        results.append({m: value(m, ctx) for m in fidelity.METRICS})
    passes = references.FEATURE_PASSES
    assert passes["samples"] == 3 and passes["reference:test"] == 1
    assert passes["samples"] + passes["reference:test"] == 3 + 1
    assert passes["reference:train"] == 1  # the noise floor, once per dataset and run
    # every job reports the same noise floor, equal to the reference rows
    floor = {r.metric: r.value for r in fidelity.reference_rows(dataset, 200, EXTRACTORS, run_cache=run_cache)}
    for job in results:
        for metric, m in job.items():
            assert m.finite and m.details["train_vs_test"] == floor[metric]
    assert sum(passes.values()) == 5  # reference_rows reused everything


# ----------------------------------------------------------------------------- robustness


def test_identical_samples_give_finite_metrics_and_the_degenerate_closed_form():
    dataset = toy_dataset()
    point = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    ctx = context(PoolModel(point.repeat(200, 1)), dataset, 200)
    got = {m: value(m, ctx) for m in fidelity.METRICS}
    assert all(m.finite for m in got.values())
    test = dataset.test.x.double().numpy()
    expected = ((test.mean(0) - point.numpy()[0]) ** 2).sum() + np.trace(np.cov(test, rowvar=False))
    assert got["fid"].value == pytest.approx(expected, rel=1e-8)  # sigma_gen = 0: ||mu diff||^2 + Tr S_ref


def test_non_finite_samples_fail_with_a_clear_message():
    samples = model_samples(1)
    samples[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        value("fid", context(PoolModel(samples), toy_dataset(), 200))


def test_missing_inception_weights_skip_with_reason_and_never_download(tmp_path, monkeypatch):
    import torch.hub
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(inception, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    monkeypatch.delenv(extractors.INCEPTION_ENV, raising=False)

    images = torch.randint(0, 256, (20, 3, 8, 8)).float()
    dataset = make_dataset("rgb", images, images, extractor="inception-v3", kind=DataKind.DISCRETE, levels=256)
    with pytest.raises(references.FidelityUnavailable) as info:
        value("fid", context(PoolModel(images), dataset, 20, data_root=tmp_path))
    assert extractors.INCEPTION_ENV in info.value.reason and extractors.INCEPTION_FILE_NAMES[0] in info.value.reason
    assert sum(references.FEATURE_PASSES.values()) == 0
    # The runner records a MetricSkipped as a skip with its reason, not a failure (tests/test_runner.py).
    from harness import MetricSkipped

    assert isinstance(info.value, MetricSkipped)

    monkeypatch.setenv(extractors.INCEPTION_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(references.FidelityUnavailable, match="nowhere.pth"):
        value("kid", context(PoolModel(images), dataset, 20, data_root=tmp_path))


def test_metrics_registered_for_sampling_models_only():
    specs = registered(fidelity.harness_register_metrics)
    assert set(specs) == set(fidelity.METRICS)
    for name, spec in specs.items():
        (out,) = spec.outputs
        assert out.name == name and out.sample_count_in_id and out.estimator == "statistic" and out.kind == "quality"
        assert out.identity(2000) == f"{name}@2000"
    assert [specs[m].outputs[0].order for m in ("fid", "kid", "precision", "density", "recall", "coverage")] == [
        60, 70, 80, 85, 90, 95]
    assert not specs["fid"].outputs[0].higher_is_better and specs["recall"].outputs[0].higher_is_better
    sampler = model_spec()
    no_sampler = ModelSpec(name="ll-only", family="test", factory=lambda s, h: None,
                           data_kinds=[DataKind.CONTINUOUS], capabilities=[], likelihood="exact")
    dataset = toy_dataset()
    for spec in specs.values():
        assert spec.incompatibility(sampler, dataset.spec) is None
        assert "sample" in spec.incompatibility(no_sampler, dataset.spec)
    bare = DatasetSpec(name="bare", kind="continuous", event_shape=(2,), load=lambda root=None: None)
    assert "no feature extractor" in specs["fid"].incompatibility(sampler, bare)
