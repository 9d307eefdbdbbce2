"""The copy metrics (harness_plugins/metrics/memorisation): each statistic equals the papers'
definition computed a second, plain way (scikit-learn's brute-force nearest neighbours, scipy's
Mann-Whitney U, full distance matrices); "models" that return training examples verbatim or with a
small change are flagged by every copy metric beyond its own noise, and one that returns held-out test
examples is not, on digits and on 8gaussians, called directly and through the runner."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import mannwhitneyu
from sklearn.neighbors import NearestNeighbors

from harness import Highlight, Judge, MetricSkipped, Role
from harness.contracts import Dataset, FitContext, MetricContext, Split, Splits
from harness.data import provenance_hash
from harness.profiles import get_profile
from harness_plugins.metrics.memorisation import features, metrics, neighbours, reference, statistics
from tests.fake_plugins import copiers

COPIERS = {"copy-train": copiers.Copier, "copy-train-noisy": copiers.NoisyCopier, "copy-test": copiers.TestCopier}


# ----------------------------------------------------------------------------- the definitions, a second way


def brute_nearest(queries, train):
    """(index, distance) of each query's nearest training row, from scipy's full distance matrix."""
    distances = cdist(queries, train)
    return distances.argmin(1), distances.min(1)


def definition_authenticity(samples, train) -> float:
    """Alaa et al.: authentic when d(s, t) > d(t, nearest other training example), t = s's nearest."""
    t, d_sample = brute_nearest(samples, train)
    within = cdist(train[t], train)
    within[np.arange(len(t)), t] = np.inf
    return float((d_sample > within.min(1)).mean())


def definition_c_t(train, test, samples, centres) -> float:
    """Meehan et al.'s C_T: cells by nearest centre; in each cell with more than 20 samples, the
    samples' and the test examples' distances to the cell's nearest training example, scipy's
    Mann-Whitney U of the samples, z-scored with the continuity correction; weighted by the test share."""
    cell = lambda x: cdist(x, centres).argmin(1)  # noqa: E731
    t_cells, p_cells, q_cells = cell(train), cell(test), cell(samples)
    total, weights = 0.0, 0.0
    for c in range(len(centres)):
        p, q, t = test[p_cells == c], samples[q_cells == c], train[t_cells == c]
        if len(q) <= 20 or len(p) == 0:
            continue
        lq, lp = brute_nearest(q, t)[1], brute_nearest(p, t)[1]
        m, n = len(lq), len(lp)
        u = mannwhitneyu(lq, lp, alternative="less").statistic
        z = (u - (m * n / 2 - 0.5)) / math.sqrt(m * n * (m + n + 1) / 12)
        total, weights = total + len(p) / len(test) * z, weights + len(p) / len(test)
    return total / weights


def definition_copy_rate(samples, train, test, q=0.05) -> float:
    threshold = np.quantile(brute_nearest(test, train)[1], q)
    return float((brute_nearest(samples, train)[1] <= threshold).mean())


def toy_features(dim, seed=0):
    """Training, test and sample features; the training set holds exact duplicates and the samples
    hold exact copies and near copies of training rows, so ties are exercised."""
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((400, dim))
    train[390:] = train[:10]  # duplicates
    test = rng.standard_normal((200, dim))
    samples = np.concatenate([rng.standard_normal((250, dim)), train[:100],
                              train[100:150] + 1e-3 * rng.standard_normal((50, dim))])
    return train, test, samples


@pytest.mark.parametrize("dim", [2, 64], ids=["kd-tree", "brute-force"])
def test_nearest_neighbours_equal_scikit_learn_and_copies_are_at_distance_zero(dim):
    train, test, samples = toy_features(dim)
    index, distance = statistics.nearest(samples, train)
    want_distance, want_index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(train).kneighbors(samples)
    np.testing.assert_allclose(distance, want_distance[:, 0], rtol=1e-9, atol=1e-6)  # scikit-learn rounds copies' 0
    np.testing.assert_allclose(distance, cdist(samples, train).min(1), rtol=1e-12, atol=0)
    assert (index == want_index[:, 0]).mean() > 0.95  # the rest: copies of duplicated rows, either one nearest
    np.testing.assert_allclose(distance, np.linalg.norm(samples - train[index], axis=1), rtol=1e-12, atol=0)
    assert (distance[250:350] == 0).all()
    other = statistics.nearest_other_distance(train, np.arange(len(train)))
    within = cdist(train, train)
    np.fill_diagonal(within, np.inf)
    np.testing.assert_allclose(other, within.min(1), rtol=1e-9, atol=1e-12)
    assert (other[:10] == 0).all() and (other[390:] == 0).all()  # a duplicate is the nearest other


@pytest.mark.parametrize("dim", [2, 64], ids=["kd-tree", "brute-force"])
def test_authenticity_and_copy_rate_equal_their_definitions(dim):
    train, test, samples = toy_features(dim)
    index, distance = statistics.nearest(samples, train)
    authentic = statistics.authentic(distance, index, statistics.nearest_other_distance(train, np.arange(len(train))))
    assert authentic.mean() == pytest.approx(definition_authenticity(samples, train), abs=1e-12)
    threshold = statistics.copy_threshold(statistics.nearest(test, train)[1])
    rate = statistics.copy_rate(statistics.nearest(samples, train)[1], threshold)
    assert rate == pytest.approx(definition_copy_rate(samples, train, test), abs=1e-12)
    assert 0.25 < rate < 0.5  # the 150 copies and near copies of 400, and about 5% of the rest


def test_z_u_equals_scipy_mann_whitney_with_ties():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 6, 40).astype(float), rng.integers(1, 7, 55).astype(float)  # many ties
    u = mannwhitneyu(a, b, alternative="less").statistic
    pairs = (a[:, None] > b[None]).sum() + 0.5 * (a[:, None] == b[None]).sum()
    assert u == pairs
    expected = (u - (40 * 55 / 2 - 0.5)) / math.sqrt(40 * 55 * 96 / 12)
    assert statistics.z_u(a, b) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 64], ids=["kd-tree", "brute-force"])
def test_c_t_equals_its_definition(dim):
    train, test, samples = toy_features(dim)
    centres = statistics.partition(train, 4)
    t_cells, p_cells, q_cells = (statistics.assign(x, centres) for x in (train, test, samples))
    got = statistics.c_t(statistics.cell_distances(samples, q_cells, train, t_cells), q_cells,
                         statistics.cell_distances(test, p_cells, train, t_cells), p_cells, len(centres))
    assert got.value == pytest.approx(definition_c_t(train, test, samples, centres), rel=1e-9)
    w = np.asarray(got.weights)
    assert got.null_sd == pytest.approx(math.sqrt((w ** 2).sum()) / w.sum())
    assert len(got.z) == 4 and got.value < -2  # 150 of 400 samples copy


def test_c_t_leaves_out_cells_with_twenty_samples_or_fewer():
    rng = np.random.default_rng(5)
    train = np.concatenate([rng.standard_normal((100, 2)), rng.standard_normal((100, 2)) + 20])
    test = np.concatenate([rng.standard_normal((50, 2)), rng.standard_normal((50, 2)) + 20])
    samples = np.concatenate([rng.standard_normal((60, 2)), train[100:120]])  # 20 copies in the far cell
    centres = np.array([[0.0, 0.0], [20.0, 20.0]])
    t_cells, p_cells, q_cells = (statistics.assign(x, centres) for x in (train, test, samples))
    got = statistics.c_t(statistics.cell_distances(samples, q_cells, train, t_cells), q_cells,
                         statistics.cell_distances(test, p_cells, train, t_cells), p_cells, 2)
    assert len(got.z) == 1 and got.weights == (0.5,) and got.null_sd == pytest.approx(1.0)
    assert got.value == pytest.approx(definition_c_t(train, test, samples, centres), rel=1e-12)


# ----------------------------------------------------------------------------- the copiers, called directly


@pytest.fixture(scope="module")
def datasets():
    from harness.host import get_host

    host = get_host()
    out = {}
    for name in ("digits", "8gaussians"):
        spec = host.dataset(name)
        splits = spec.load(None)
        out[name] = Dataset(spec, splits, provenance_hash(splits))
    return out


def _context(model, dataset, run_cache, profile="smoke") -> MetricContext:
    from harness.host import get_host

    host = get_host()
    fit = FitContext("cpu", seed=0)
    model.fit(dataset.train, dataset.val, fit)
    fit.finish()
    return MetricContext(model=model, model_spec=host.model("gaussian"), dataset=dataset, profile=get_profile(profile),
                         device=torch.device("cpu"), seed=0, fit=fit,
                         feature_extractors=host.registry.feature_extractors, run_cache=run_cache)


def assert_flags(values: dict, n: int) -> None:
    """``values``: model -> {output: (value, test_reference)}. Copiers beyond five times the metric's
    noise (C_T: its null sd; the shares: the binomial error of a model scoring like new data), the
    test-example model within four times it."""
    for model, got in values.items():
        ct, ct_sd = got["copying_ct"]
        copier = model != "copy-test"
        for share in ("authenticity", "copy_rate"):
            value, ref = got[share]
            noise = math.sqrt(ref * (1 - ref) / n)
            if copier:
                assert (value < ref - 5 * noise) if share == "authenticity" else (value > ref + 5 * noise), \
                    (model, share, value, ref)
            else:
                assert abs(value - ref) < 4 * noise, (model, share, value, ref)
        assert (ct < -5 * ct_sd and ct < -3) if copier else abs(ct) < 4 * ct_sd, (model, ct, ct_sd)


@pytest.mark.parametrize("name", ["digits", "8gaussians"])
def test_copiers_are_flagged_and_test_examples_are_not_called_directly(datasets, name):
    dataset = datasets[name]
    run_cache: dict = {}
    values = {}
    n = features.SAMPLE_COUNT.of("smoke")["samples"]
    for model_name, cls in COPIERS.items():
        ctx = _context(cls(dataset.spec, {}), dataset, run_cache)
        got = {m.metric: m for m in metrics.compute(ctx)}
        values[model_name] = {k: (m.value, m.stderr if k == "copying_ct" else m.details["test_reference"])
                              for k, m in got.items()}
        # the same numbers from the definitions, on the same features
        ref = reference.reference_for(dataset, n, ctx.feature_extractors, run_cache=run_cache)
        extractor = ctx.run_cache[("fidelity:extractor", ref.extractor, name, dataset.provenance, "cpu")]
        samples = features.job_sample_features(ctx, ref.extractor, extractor, n)
        assert got["authenticity"].value == pytest.approx(definition_authenticity(samples, ref.train), abs=1e-12)
        assert got["copy_rate"].value == pytest.approx(definition_copy_rate(samples, ref.train, ref.test), abs=1e-12)
        assert got["copying_ct"].value == pytest.approx(definition_c_t(ref.train, ref.test, samples, ref.centres),
                                                        rel=1e-9)
        assert got["copy_rate"].details["test_reference"] == pytest.approx(
            definition_copy_rate(ref.test, ref.train, ref.test), abs=1e-12)
        assert got["authenticity"].details["test_reference"] == pytest.approx(
            definition_authenticity(ref.test, ref.train), abs=1e-12)
    assert len(ref.train) == len(dataset.train) and len(ref.test) == min(n, len(dataset.test))
    assert_flags(values, n)


def test_nearest_training_examples_index_the_training_split(datasets, monkeypatch):
    """The panel's neighbours are rows of dataset.train, also when only an evaluation subset of it is
    searched; a training example is its own nearest (distance 0); the threshold is copy_rate's."""
    dataset = datasets["digits"]
    from harness.contracts import NeighbourQuery
    from harness.host import get_host

    monkeypatch.setattr(reference, "MAX_TRAIN", 500)
    subset = torch.as_tensor(reference.evaluation_indices(len(dataset.train), 500))
    rows = subset[torch.randperm(len(subset), generator=torch.Generator().manual_seed(0))[:50]]
    run_cache: dict = {}
    query = NeighbourQuery(dataset, dataset.train.x[rows], get_profile("smoke"),
                           get_host().registry.feature_extractors, run_cache=run_cache)
    got = neighbours.nearest_training_examples(query)
    assert (got.distance == 0).all()
    assert torch.equal(dataset.train.x[torch.as_tensor(got.index)], dataset.train.x[rows])
    n = features.SAMPLE_COUNT.of("smoke")["samples"]
    ref = reference.reference_for(dataset, n, query.feature_extractors, run_cache=run_cache)
    assert got.threshold == pytest.approx(np.quantile(ref.test_distance, 0.05), rel=1e-12)
    # test examples: their distances are those the reference measured for them
    test = dataset.test.x[reference.evaluation_indices(len(dataset.test), n)]
    assert neighbours.nearest_training_examples(
        NeighbourQuery(dataset, test, get_profile("smoke"), query.feature_extractors, run_cache=run_cache)
    ).distance == pytest.approx(ref.test_distance, rel=1e-9, abs=1e-12)


def test_a_test_split_too_small_skips_with_the_reason():
    g = torch.Generator().manual_seed(0)
    splits = Splits(Split(torch.randn(100, 2, generator=g)), Split(torch.randn(10, 2, generator=g)),
                    Split(torch.randn(10, 2, generator=g)))
    from harness import DataKind, DatasetSpec

    spec = DatasetSpec(name="small", kind=DataKind.CONTINUOUS, event_shape=(2,), load=lambda root: splits,
                       feature_extractor="raw")
    dataset = Dataset(spec, splits, provenance_hash(splits))
    ctx = _context(copiers.Copier(spec, {}), dataset, {})
    with pytest.raises(MetricSkipped, match="at least 2 training and 20 test examples.*has 100 and 10"):
        metrics.compute(ctx)


# ----------------------------------------------------------------------------- through the runner


def test_the_runner_flags_the_copiers_at_smoke(host, tmp_path):
    from harness.runner import Runner

    host.add_plugin(copiers, "copiers")
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0], metrics=["copying"])
    store, summary = runner.run(runner.plan(list(COPIERS), ["digits", "8gaussians"], False))
    df = store.results()
    store.close()
    assert summary["ok"] == 6 and summary["failed"] == 0
    n = features.SAMPLE_COUNT.of("smoke")["samples"]
    assert set(df["id"]) == {f"copying_ct@{n}", f"authenticity@{n}", f"copy_rate@{n}"}
    for _, rows in df.groupby("dataset"):
        values = {}
        for model, group in rows.groupby("model"):
            by_metric = group.set_index("metric")
            values[model] = {
                "copying_ct": (by_metric.loc["copying_ct", "value"], by_metric.loc["copying_ct", "stderr"]),
                **{k: (by_metric.loc[k, "value"], _details(by_metric.loc[k])["test_reference"])
                   for k in ("authenticity", "copy_rate")}}
        assert_flags(values, n)


def _details(row) -> dict:
    import json

    details = row["details"]
    return json.loads(details) if isinstance(details, str) else details


def test_declarations():
    outputs = {o.name: o for o in metrics.metric_spec().outputs}
    assert set(outputs) == {"copying_ct", "authenticity", "copy_rate"}
    assert all(o.role is Role.MEMORISATION and o.sample_count_in_id and o.estimator == "statistic"
               and o.highlight is Highlight.WORST and o.judge is Judge.BEYOND_REFERENCE for o in outputs.values())
    assert metrics.metric_spec().neighbours is neighbours.nearest_training_examples
    assert outputs["copying_ct"].higher_is_better and outputs["authenticity"].higher_is_better
    assert not outputs["copy_rate"].higher_is_better
