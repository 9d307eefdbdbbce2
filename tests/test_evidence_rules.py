"""harness.evidence's rules and inputs: Holm's correction against its definition (closed testing and
the step-down walk, brute force) and against scipy's Benjamini-Hochberg bound; the pair matrix and its
best set; the across-seed rule; the seed spread; and the clear errors for inputs that cannot be paired."""

import itertools
import json
import math
import statistics

import numpy as np
import pytest
from scipy import stats

from harness.errors import UserError
from harness.evidence import (ACROSS_SEEDS, PAIRED, SEEDS, TEST_EXAMPLES, PerExample, across_seeds,
                              best_across_seeds, holm_adjust, paired_difference, paired_matrix, seed_spread)


def holm_by_closed_testing(p):
    """Holm = closed testing with Bonferroni local tests: H_i's adjusted p-value is the largest, over
    every subset J that contains i, of min(1, |J| min_{j in J} p_j)."""
    m = len(p)
    out = []
    for i in range(m):
        worst = 0.0
        for size in range(1, m + 1):
            for subset in itertools.combinations(range(m), size):
                if i in subset:
                    worst = max(worst, min(1.0, size * min(p[j] for j in subset)))
        out.append(worst)
    return np.array(out)


def holm_step_down(p, alpha):
    """Holm's walk: sort ascending, reject while p_(k) <= alpha / (m - k + 1), stop at the first that is not."""
    rejected = set()
    for k, i in enumerate(sorted(range(len(p)), key=lambda i: p[i])):
        if p[i] > alpha / (len(p) - k):
            break
        rejected.add(i)
    return rejected


def random_p_values(rng, m):
    p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 3)
    p[rng.random(m) < 0.2] = p[0]  # ties
    p[rng.random(m) < 0.05] = 1.0
    return p


def test_holm_equals_closed_testing_and_the_step_down_walk():
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = random_p_values(rng, int(rng.integers(1, 7)))
        adjusted = holm_adjust(p)
        assert adjusted == pytest.approx(holm_by_closed_testing(p), abs=1e-12)
        for alpha in (0.001, 0.01, 0.05, 0.1, 0.2):
            assert {i for i, q in enumerate(adjusted) if q <= alpha} == holm_step_down(p, alpha)


def test_holm_lies_between_scipys_benjamini_hochberg_and_bonferroni():
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = random_p_values(rng, int(rng.integers(2, 30)))
        adjusted = holm_adjust(p)
        assert (adjusted >= stats.false_discovery_control(p, method="bh") - 1e-12).all()
        assert (adjusted <= np.minimum(1, len(p) * p) + 1e-12).all()
        assert (adjusted >= p).all()


def test_holm_leaves_one_test_alone_and_refuses_what_is_no_p_value():
    assert holm_adjust([0.03]).tolist() == [0.03]
    assert holm_adjust([]).size == 0
    for bad in ([0.1, math.nan], [1.2], [-0.1]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            holm_adjust(bad)


def model(name, values, indices=None):
    values = np.atleast_2d(values)
    return PerExample(name, values, np.arange(values.shape[1]) if indices is None else indices)


def shifted(rng, shifts, seeds=3, n=400):
    """Models sharing example effects, each shifted by a constant, with a little independent noise."""
    e = rng.normal(0, 1, n)
    return [model(f"m{k}", e + s + rng.normal(0, 0.05, (seeds, n))) for k, s in enumerate(shifts)]


def test_the_matrix_holm_corrects_every_pair_and_marks_the_best_set():
    models = shifted(np.random.default_rng(2), [0.0, 0.002, 0.05, 0.2])  # lower is better: m0 best, m1 tied
    matrix = paired_matrix(models, higher_is_better=False, alpha=0.05)
    raw = [p.p_value for p in matrix.pairs.values()]
    assert list(matrix.adjusted.values()) == pytest.approx(holm_by_closed_testing(raw).tolist())
    assert matrix.best.best == "m0" and matrix.best.members == ("m0", "m1") and matrix.best.rule == PAIRED
    assert "Holm" in matrix.best.description and "0.05" in matrix.best.description
    assert matrix.significant("m3", "m0") and not matrix.significant("m1", "m0")
    diff = matrix.frame("difference")
    assert diff.loc["m2", "m0"] == pytest.approx(-diff.loc["m0", "m2"]) == pytest.approx(0.05, abs=0.01)
    assert math.isnan(diff.loc["m1", "m1"])
    assert matrix.frame("p_adjusted").loc["m3", "m0"] == matrix.p_adjusted("m0", "m3")
    assert matrix.seeds_included
    json.dumps(matrix.as_dict())
    higher = paired_matrix(models, higher_is_better=True, alpha=0.05)
    assert higher.best.members == ("m3",)


def test_identical_models_are_not_different():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 50))
    r = paired_difference(model("a", values), model("b", values))
    assert r.difference == 0 and r.p_value == 1.0
    one = paired_difference(model("a", values[0]), model("b", values[0]))
    assert (one.difference, one.stderr, one.p_value) == (0.0, 0.0, 1.0)
    matrix = paired_matrix([model(n, values) for n in "abc"], higher_is_better=True)
    assert set(matrix.best.members) == {"a", "b", "c"}


def test_a_difference_without_any_noise_is_certain():
    r = paired_difference(model("a", np.full(10, 2.0)), model("b", np.full(10, 1.0)))
    assert (r.difference, r.stderr, r.p_value, r.statistic) == (1.0, 0.0, 0.0, math.inf)


def test_different_test_examples_are_refused_clearly():
    a, b = model("a", np.zeros((2, 5))), model("b", np.zeros((2, 5)), np.arange(1, 6))
    with pytest.raises(UserError, match=r"a and b were evaluated on different test examples \(5 examples against "
                                        r"5, 4 in common\)"):
        paired_difference(a, b)
    with pytest.raises(UserError, match="different test examples"):
        paired_matrix([a, b], higher_is_better=True)
    with pytest.raises(UserError, match="seed 1 was evaluated on other test examples"):
        PerExample.from_seeds("a", [(np.arange(5), np.zeros(5)), (np.arange(1, 6), np.zeros(5))])


def test_the_same_examples_in_another_order_are_aligned():
    rng = np.random.default_rng(4)
    values, perm = rng.normal(size=(2, 30)), rng.permutation(30)
    other = rng.normal(size=(2, 30))
    sorted_ = paired_difference(model("a", values), model("b", other))
    shuffled = paired_difference(model("a", values[:, perm], perm), model("b", other))
    assert shuffled.difference == pytest.approx(sorted_.difference) and shuffled.stderr == pytest.approx(sorted_.stderr)
    stacked = PerExample.from_seeds("a", [(perm, values[0, perm]), (np.arange(30), values[1])])
    assert np.array_equal(stacked.values, values) and stacked.seeds == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_clearly(bad):
    values = np.zeros((3, 10))
    values[1, 4] = bad
    with pytest.raises(UserError, match=r"a: 1 per-example value\(s\) are NaN or infinite \(the first: seed row 1, "
                                        r"test example 4"):
        model("a", values)


@pytest.mark.parametrize("values, indices, message", [
    (np.zeros((2, 3)), np.arange(4), "3 per-example values per seed but 4 evaluation indices"),
    (np.zeros((2, 1)), np.arange(1), "at least two test examples"),
    (np.zeros((2, 3)), np.array([0, 1, 1]), "repeat a test example"),
    (np.zeros((2, 3)), np.array([0.0, 1.0, 2.0]), "must be integers"),
    (np.zeros((2, 3, 1)), np.arange(3), r"shape \(seeds, examples\)"),
])
def test_malformed_inputs_are_refused_clearly(values, indices, message):
    with pytest.raises(UserError, match=message):
        PerExample("a", values, indices)


def test_the_matrix_refuses_a_repeated_model_and_a_bad_level():
    a = model("a", np.arange(4.0))
    with pytest.raises(UserError, match="repeated: a"):
        paired_matrix([a, a], higher_is_better=True)
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        paired_matrix([a], higher_is_better=True, alpha=1.0)
    single = paired_matrix([a], higher_is_better=True)
    assert single.best.members == ("a",) and not single.pairs


def test_the_across_seed_rule_is_the_mean_and_the_error_over_seeds():
    s = across_seeds([1.0, 1.4, 0.9])
    assert (s.mean, s.stderr, s.seeds, s.seeds_included) == pytest.approx(
        (statistics.mean([1.0, 1.4, 0.9]), statistics.stdev([1.0, 1.4, 0.9]) / math.sqrt(3), 3, True))
    one = across_seeds([2.5], [0.1])
    assert (one.mean, one.stderr, one.seeds, one.seeds_included) == (2.5, 0.1, 1, False)
    assert math.isnan(across_seeds([2.5]).stderr) and math.isnan(across_seeds([2.5], [None]).stderr)
    with pytest.raises(UserError, match="NaN or infinite"):
        across_seeds([1.0, math.nan])
    with pytest.raises(UserError, match="one per seed"):
        across_seeds([1.0], [0.1, 0.2])


def test_the_across_seed_best_set_is_the_best_and_every_model_within_the_combined_error():
    cells = {"a": across_seeds([1.0, 1.2, 1.1]),   # 1.10 +- 0.058
             "b": across_seeds([1.15, 1.25, 1.2]),  # 1.20 +- 0.029: 0.10 > hypot = 0.065, not tied
             "c": across_seeds([1.1, 1.3, 1.2]),    # 1.20 +- 0.058: 0.10 > 0.082, not tied
             "d": across_seeds([1.0, 1.3, 1.15]),   # 1.15 +- 0.087: 0.05 <= 0.104, tied
             "e": across_seeds([1.16], [0.1])}      # one seed, its own error 0.1: 0.06 <= 0.116, tied
    best = best_across_seeds(cells, higher_is_better=False)
    assert best.best == "a" and best.members == ("a", "d", "e") and best.rule == ACROSS_SEEDS
    assert "d" in best and "b" not in best
    assert best_across_seeds(cells, higher_is_better=True).best in ("b", "c")


def test_the_seed_spread_is_set_beside_the_within_seed_test_error():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(4, 200)) + np.array([[0.0], [0.3], [-0.2], [0.1]])
    m = model("a", values)
    spread = seed_spread(m.seed_means(), m.seed_stderrs())
    means = values.mean(axis=1)
    within = [statistics.stdev(row) / math.sqrt(200) for row in values]
    assert spread.seed_sd == pytest.approx(statistics.stdev(means))
    assert spread.seed_stderr == pytest.approx(statistics.stdev(means) / 2)
    assert spread.test_stderr == pytest.approx(statistics.mean(within))
    assert spread.ratio == pytest.approx(spread.seed_sd / spread.test_stderr) and spread.dominant == SEEDS
    quiet = seed_spread([1.0, 1.001, 0.999], [0.05, 0.05, None])
    assert quiet.test_stderr == 0.05 and quiet.dominant == TEST_EXAMPLES
    one = seed_spread([1.0], [0.05])
    assert math.isnan(one.seed_sd) and one.dominant == "" and one.test_stderr == 0.05
    assert seed_spread([1.0, 2.0], [None, None]).dominant == ""
