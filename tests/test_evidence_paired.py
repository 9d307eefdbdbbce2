"""The paired comparison of harness.evidence: a small known KL difference between two Gaussians is found
paired and missed unpaired; equal models are called different no more often than the declared level
(also with Holm over many pairs); the variance estimate is unbiased; it reduces to scipy's t-tests in
the two limits it must reduce to."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.evidence import (EXAMPLES_ONLY, SEEDS_AND_EXAMPLES, PerExample, SeedSummary, best_across_seeds,
                              paired_difference, paired_matrix, seed_spread)

ALPHA = 0.05


def gaussian_log_density(x, mean, var):
    d = x.shape[1]
    return -0.5 * d * np.log(2 * np.pi * var) - ((x - mean) ** 2).sum(axis=1) / (2 * var)


def gaussian_expected_nll(mean, var, d):
    """E[-log N(x; mean, var I)] for x ~ N(0, I): d/2 log(2 pi var) + (d + |mean|^2) / (2 var)."""
    return 0.5 * d * math.log(2 * math.pi * var) + (d + float(mean @ mean)) / (2 * var)


def test_a_small_known_kl_difference_is_found_paired_and_missed_unpaired():
    # Truth N(0, I) in 2-D. Model a is the truth, model b the same Gaussian with its variance 10% too
    # large. The difference in expected NLL is KL(p || b) - KL(p || a) = D/2 (log(1 + eps) + 1/(1 + eps) - 1).
    d, n, seeds, eps, jitter = 2, 8000, 3, 0.10, 0.01
    analytic = 0.5 * d * (math.log1p(eps) + 1 / (1 + eps) - 1)
    assert 0.002 < analytic < 0.005  # 0.0044 nats
    rng = np.random.default_rng(26)
    x = rng.normal(size=(n, d))  # the shared test examples

    def model(name, scale):
        # each seed: a slightly different fitted Gaussian (log-variance and mean off by ~1%)
        var = scale * np.exp(rng.normal(0, jitter, seeds))
        mean = rng.normal(0, jitter, (seeds, d))
        values = np.stack([gaussian_log_density(x, mean[s], var[s]) for s in range(seeds)])
        nll = np.mean([gaussian_expected_nll(mean[s], var[s], d) for s in range(seeds)])
        return PerExample(name, values, np.arange(n)), nll

    a, nll_a = model("a", 1.0)
    b, nll_b = model("b", 1.0 + eps)
    realised = nll_b - nll_a  # the analytic difference of the seeds actually drawn
    assert realised == pytest.approx(analytic, abs=0.002)

    paired = paired_difference(a, b)  # log-likelihoods: a - b = NLL(b) - NLL(a)
    assert paired.estimator == SEEDS_AND_EXAMPLES and paired.seeds_included
    assert paired.p_value < ALPHA
    assert abs(paired.difference - realised) < 2 * paired.stderr
    matrix = paired_matrix([a, b], higher_is_better=True, alpha=ALPHA)
    assert matrix.best.members == ("a",) and matrix.significant("a", "b")

    # The unpaired rule: each model's mean +- its test-set standard error, tied within the combined error.
    spread = {m.name: seed_spread(m.seed_means(), m.seed_stderrs()) for m in (a, b)}
    cells = {m.name: SeedSummary(float(m.values.mean()), spread[m.name].test_stderr, m.seeds, False) for m in (a, b)}
    assert best_across_seeds(cells, higher_is_better=True).members == ("a", "b")
    combined = math.hypot(cells["a"].stderr, cells["b"].stderr)
    assert paired.stderr < combined / 5  # pairing removes the examples' common spread


def simulate(rng, n_models, seeds, examples, seed_sd, example_sd, interaction_sd, correlation=1.0):
    """Per-example values of equally good models: value = seed effect + example effect + interaction.
    ``correlation`` is how alike the models' example effects are (1: copies of one model)."""
    common = rng.normal(0, example_sd, examples)
    models = []
    for k in range(n_models):
        own = correlation * common + math.sqrt(1 - correlation ** 2) * rng.normal(0, example_sd, examples)
        values = own + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, interaction_sd, (seeds, examples))
        models.append(PerExample(f"m{k}", values, np.arange(examples)))
    return models


def clopper_pearson_low(k, n, level=0.99):
    return stats.beta.ppf((1 - level) / 2, k, n - k + 1) if k else 0.0


# (seed sd, example sd, interaction sd, correlation): seeds dominate, examples dominate, both matter.
REGIMES = {"seeds dominate": (0.05, 1.0, 0.1, 1.0), "examples dominate": (0.002, 1.0, 0.1, 0.9),
           "balanced": (0.02, 1.0, 0.3, 0.9)}


@pytest.mark.parametrize("regime", REGIMES)
def test_equal_models_with_three_seeds_are_called_different_at_most_at_the_declared_level(regime):
    rng = np.random.default_rng(20260626)
    trials = 2000
    results = [paired_difference(*simulate(rng, 2, 3, 400, *REGIMES[regime])) for _ in range(trials)]
    rejected = sum(r.p_value <= ALPHA for r in results)
    assert clopper_pearson_low(rejected, trials) <= ALPHA, f"{regime}: {rejected}/{trials} rejected"
    if regime == "seeds dominate":
        # the t reference with few degrees of freedom is what holds the level here: a normal one does not
        normal = sum(2 * stats.norm.sf(abs(r.statistic)) <= ALPHA for r in results)
        assert clopper_pearson_low(normal, trials) > ALPHA
        assert np.median([r.df for r in results]) < 5


def test_holm_keeps_the_family_wise_error_over_several_equal_models():
    rng = np.random.default_rng(7)
    trials, n_models = 1000, 5
    any_rejected = whole_best_set = 0
    for _ in range(trials):
        matrix = paired_matrix(simulate(rng, n_models, 3, 300, *REGIMES["balanced"]), higher_is_better=False,
                               alpha=ALPHA)
        any_rejected += any(matrix.significant(a, b) for a, b in matrix.pairs)
        whole_best_set += len(matrix.best.members) == n_models
    assert clopper_pearson_low(any_rejected, trials) <= ALPHA, f"{any_rejected}/{trials} families with a rejection"
    assert whole_best_set >= trials - any_rejected  # a model leaves the best set only through a rejection


def test_the_variance_estimate_is_unbiased_for_the_crossed_seed_and_example_design():
    # Var(D) = s_a^2/S_a + s_b^2/S_b + s_(e-f)^2/N + g^2/(S_a N) + h^2/(S_b N), unequal seed counts
    rng = np.random.default_rng(3)
    sa, sb, n, tau, ex, rho, g = 3, 5, 200, 0.03, 1.0, 0.8, 0.4
    var_e_minus_f = 2 * ex ** 2 * (1 - rho)
    analytic = tau ** 2 / sa + tau ** 2 / sb + var_e_minus_f / n + g ** 2 / (sa * n) + g ** 2 / (sb * n)
    diffs, variances = [], []
    for _ in range(4000):
        e = rng.normal(0, ex, n)
        f = rho * e + math.sqrt(1 - rho ** 2) * rng.normal(0, ex, n)
        a = PerExample("a", e + rng.normal(0, tau, (sa, 1)) + rng.normal(0, g, (sa, n)), np.arange(n))
        b = PerExample("b", f + rng.normal(0, tau, (sb, 1)) + rng.normal(0, g, (sb, n)), np.arange(n))
        r = paired_difference(a, b)
        diffs.append(r.difference)
        variances.append(r.stderr ** 2)
    assert np.mean(variances) == pytest.approx(analytic, rel=0.05)
    assert np.var(diffs) == pytest.approx(analytic, rel=0.10)


def test_one_seed_is_scipys_paired_t_over_examples_and_says_seeds_are_not_included():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 500), rng.normal(0.05, 1, 500)
    r = paired_difference(PerExample("a", x, np.arange(500)), PerExample("b", x + y, np.arange(500)))
    ref = stats.ttest_rel(x, x + y)
    assert r.estimator == EXAMPLES_ONLY and not r.seeds_included and "not included" in r.note
    assert (r.statistic, r.p_value, r.df) == pytest.approx((ref.statistic, ref.pvalue, 499))
    assert r.difference == pytest.approx(np.mean(-y))


def test_with_one_seed_on_one_side_the_fallback_names_that_model():
    rng = np.random.default_rng(1)
    a = PerExample("a", rng.normal(size=(3, 100)), np.arange(100))
    b = PerExample("b", rng.normal(size=(1, 100)), np.arange(100))
    r = paired_difference(a, b)
    assert r.estimator == EXAMPLES_ONLY and r.note.startswith("b has one seed")
    ref = stats.ttest_rel(a.example_means(), b.values[0])
    assert (r.statistic, r.p_value) == pytest.approx((ref.statistic, ref.pvalue))


def test_without_example_or_interaction_noise_it_is_welchs_t_over_seed_means():
    rng = np.random.default_rng(2)
    e = rng.normal(size=300)  # the same example effects in both models: the paired term vanishes
    a = PerExample("a", e + rng.normal(0.0, 0.1, (3, 1)), np.arange(300))
    b = PerExample("b", e + rng.normal(0.2, 0.3, (4, 1)), np.arange(300))
    r = paired_difference(a, b)
    ref = stats.ttest_ind(a.seed_means(), b.seed_means(), equal_var=False)
    assert r.components["examples"] == pytest.approx(0, abs=1e-20)
    assert (r.statistic, r.p_value, r.df) == pytest.approx((ref.statistic, ref.pvalue, ref.df))


def test_reversing_a_pair_negates_the_difference_and_keeps_the_p_value():
    rng = np.random.default_rng(4)
    e = rng.normal(size=200)
    a = PerExample("a", e + rng.normal(0, 0.2, (3, 200)), np.arange(200))
    b = PerExample("b", e + 0.05 + rng.normal(0, 0.2, (5, 200)), np.arange(200))
    ab, ba = paired_difference(a, b), paired_difference(b, a)
    assert ba.difference == pytest.approx(-ab.difference) and ba.p_value == pytest.approx(ab.p_value)
    flipped = ab.reversed()
    assert (flipped.a, flipped.b, flipped.seeds) == ("b", "a", (5, 3))
    assert flipped.components == pytest.approx(dict(ba.components))
