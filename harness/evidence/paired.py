"""The paired difference of two models on the same test examples, with a standard error that covers
both which test examples were drawn and which training runs (seeds) each model got.

The estimator (:func:`paired_difference`): variance components with a Welch-Satterthwaite t.

Model A's value of test example i under seed s is taken as ``x_A[s, i] = mu_A + alpha_s + e_i + g_si``
(a seed effect, an example effect, a seed x example interaction; B alike with ``beta_t``, ``f_i``,
``h_ti``). The seeds of A and B are independent training runs, so nothing pairs seed s of A with seed s
of B; the examples are shared, so ``e_i`` and ``f_i`` are correlated, which is what pairing exploits.
The difference is ``D = mean(x_A) - mean(x_B)`` (each model averaged over its seeds and the examples) and

    Var(D) = s2_alpha / S_A + s2_beta / S_B + s2_(e-f) / N + s2_g / (S_A N) + s2_h / (S_B N).

Each term is estimated without bias:

- ``c_A = var_s(seed means of A) / S_A``: the spread of A's per-seed means covers s2_alpha and
  s2_g / N (so c_A + c_B carry the seed terms and the interaction terms); S_A - 1 degrees of freedom;
- ``c_E = (var_i(d_i) - MS_g / S_A - MS_h / S_B) / N`` with ``d_i`` the paired per-example difference
  of the seed means: var_i(d_i) covers s2_(e-f) and the interactions again, so the interaction mean
  squares of the two seeds x examples tables (``PerExample.interaction_variance``) are taken out
  (clipped at 0); N - 1 degrees of freedom.

``SE = sqrt(c_A + c_B + c_E)``, and ``t = D / SE`` is referred to Student's t with the
Welch-Satterthwaite degrees of freedom ``SE^4 / (c_A^2 / (S_A - 1) + c_B^2 / (S_B - 1) + c_E^2 / (N - 1))``.
With 3 seeds a seed-dominated comparison has 2 to 4 degrees of freedom, so the test stays at its
level where a normal reference would not; when seeds agree the example term dominates and the error is
the paired one, far below the two models' test errors combined.

With one seed on either side the seed spread cannot be estimated: the comparison falls back to the
paired t over examples (``var_i(d_i) / N``, N - 1 degrees of freedom) and says that the variation
between training runs is not included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Tuple

from scipy import stats

from harness.evidence.samples import PerExample, check_aligned

SEEDS_AND_EXAMPLES = "paired, seeds and examples (variance components, Welch-Satterthwaite t)"
EXAMPLES_ONLY = "paired t over examples (seed variation not included)"


@dataclass(frozen=True)
class PairedDifference:
    """The comparison of model ``a`` with model ``b`` on the same test examples.

    ``difference``: mean(a) - mean(b), each model averaged over its seeds and the examples.
    ``stderr``: its standard error; ``df``: the t reference's degrees of freedom; ``statistic``:
    difference / stderr; ``p_value``: two-sided. ``estimator``: :data:`SEEDS_AND_EXAMPLES` or
    :data:`EXAMPLES_ONLY`; ``seeds_included`` says whether the variation between training runs is in
    the error. ``components``: the variance terms that add up to stderr^2 (``seeds_a``, ``seeds_b``,
    ``examples``; only ``examples`` when seeds are not included). ``note``: the same, in words."""

    a: str
    b: str
    difference: float
    stderr: float
    df: float
    statistic: float
    p_value: float
    estimator: str
    seeds_included: bool
    seeds: Tuple[int, int]
    examples: int
    components: Mapping[str, float] = field(default_factory=dict)
    note: str = ""

    def reversed(self) -> "PairedDifference":
        """The same comparison read as ``b`` against ``a``."""
        parts = dict(self.components)
        if self.seeds_included:
            parts["seeds_a"], parts["seeds_b"] = self.components["seeds_b"], self.components["seeds_a"]
        return replace(self, a=self.b, b=self.a, difference=-self.difference, statistic=-self.statistic,
                       seeds=self.seeds[::-1], components=parts)

    def as_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "difference": self.difference, "stderr": self.stderr, "df": self.df,
                "statistic": self.statistic, "p_value": self.p_value, "estimator": self.estimator,
                "seeds_included": self.seeds_included, "seeds": list(self.seeds), "examples": self.examples,
                "components": dict(self.components), "note": self.note}


def paired_difference(a: PerExample, b: PerExample) -> PairedDifference:
    """Compare ``a`` with ``b`` on their shared test examples (see the module's docstring for the
    estimator). Raises :class:`harness.errors.UserError` when they were evaluated on different examples."""
    check_aligned(a, b)
    n = a.examples
    d = a.example_means() - b.example_means()
    difference = float(d.mean())
    var_d = float(d.var(ddof=1))
    if a.seeds >= 2 and b.seeds >= 2:
        c_a = float(a.seed_means().var(ddof=1)) / a.seeds
        c_b = float(b.seed_means().var(ddof=1)) / b.seeds
        c_e = max(0.0, var_d - a.interaction_variance() / a.seeds - b.interaction_variance() / b.seeds) / n
        variance = c_a + c_b + c_e
        spread = c_a ** 2 / (a.seeds - 1) + c_b ** 2 / (b.seeds - 1) + c_e ** 2 / (n - 1)
        df = variance ** 2 / spread if spread > 0 else float(n - 1)
        components = {"seeds_a": c_a, "seeds_b": c_b, "examples": c_e}
        estimator, included = SEEDS_AND_EXAMPLES, True
        note = (f"{a.seeds} seeds of {a.name} and {b.seeds} of {b.name} on {n} shared test examples; the error "
                "covers the test examples and the variation between training runs")
    else:
        variance, df = var_d / n, float(n - 1)
        components = {"examples": variance}
        estimator, included = EXAMPLES_ONLY, False
        single = " and ".join(m.name for m in (a, b) if m.seeds < 2)
        note = (f"{single} has one seed: the error covers the {n} test examples only; the variation between "
                "training runs is not included")
    stderr = math.sqrt(variance)
    if stderr > 0:
        statistic = difference / stderr
        p_value = float(2 * stats.t.sf(abs(statistic), df))
    else:  # no noise at all: equal means are not different, unequal ones certainly are
        statistic = 0.0 if difference == 0 else math.copysign(math.inf, difference)
        p_value = 1.0 if difference == 0 else 0.0
    return PairedDifference(a.name, b.name, difference, stderr, df, statistic, p_value, estimator, included,
                            (a.seeds, b.seeds), n, components, note)
