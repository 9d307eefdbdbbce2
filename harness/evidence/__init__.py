"""Statistics a comparison of models can stand on: paired differences over test examples and seeds,
Holm-corrected pair matrices and best sets, the across-seed rule, and the seed spread beside the test
error. Pure functions of arrays; docs/evidence.md explains the estimators.

- :class:`PerExample`: one model's per-example values, shape (seeds, examples), with the evaluation
  subset's indices; ``PerExample.from_seeds`` stacks what each job stores.
- :func:`paired_difference`: A against B on the same test examples -> :class:`PairedDifference`.
- :func:`paired_matrix`: every pair, Holm at level alpha, the best set -> :class:`PairMatrix`.
- :func:`holm_adjust`: Holm-adjusted p-values.
- :func:`across_seeds`, :func:`best_across_seeds`: the rule for measurements without per-example values.
- :func:`seed_spread`: the spread between seeds beside the within-seed test error.
"""

from harness.evidence.best import ACROSS_SEEDS, PAIRED, BestSet
from harness.evidence.holm import holm_adjust
from harness.evidence.matrix import PAIRED_RULE, PairMatrix, paired_matrix
from harness.evidence.paired import EXAMPLES_ONLY, SEEDS_AND_EXAMPLES, PairedDifference, paired_difference
from harness.evidence.samples import PerExample, check_aligned
from harness.evidence.seeds import (ACROSS_SEEDS_RULE, SEEDS, TEST_EXAMPLES, SeedSpread, SeedSummary, across_seeds,
                                    best_across_seeds, seed_spread)

__all__ = ["ACROSS_SEEDS", "ACROSS_SEEDS_RULE", "EXAMPLES_ONLY", "PAIRED", "PAIRED_RULE", "SEEDS",
           "SEEDS_AND_EXAMPLES", "TEST_EXAMPLES", "BestSet", "PairMatrix", "PairedDifference", "PerExample",
           "SeedSpread", "SeedSummary", "across_seeds", "best_across_seeds", "check_aligned", "holm_adjust",
           "paired_difference", "paired_matrix", "seed_spread"]
