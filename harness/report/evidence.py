"""The evidence behind a report's tables: which cells of a column are best and by which rule, the paired
matrix of every likelihood column, and the spread between seeds beside one seed's test error.

Rules (:mod:`harness.evidence`, docs/evidence.md). In each column with a declared direction, cells are
ranked within one estimator mark (exact values, bounds and estimates are never ranked together; a
mark held by one model gets no best mark):

- **paired**, where every model of the group kept per-example values on the same test examples: the
  best mean and every model whose paired difference from it is not significant at :data:`REPORT_ALPHA`,
  Holm-corrected over all pairs of the group (:func:`harness.evidence.paired_matrix`);
- **across seeds** otherwise (sample statistics, speed, results without per-example values): the best
  mean and every model within the combined standard error of it
  (:func:`harness.evidence.best_across_seeds`).

The matrices of the columns whose output declares role likelihood are kept for the report to show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from harness.contracts import Role
from harness.errors import UserError
from harness.evidence import (ACROSS_SEEDS, PAIRED, BestSet, PairMatrix, SeedSpread, SeedSummary, best_across_seeds,
                              paired_matrix, seed_spread)

# The declared level of the report's paired comparisons (family-wise, Holm over the pairs of a column).
REPORT_ALPHA = 0.05

RULE_NAMES = {PAIRED: "paired test", ACROSS_SEEDS: "within standard errors over seeds"}


class RunPerExample:
    """The per-example values of a summarised run, by (dataset, model, measurement identity), over the
    seeds its summary used (``seed_keys``); None where a seed kept none."""

    def __init__(self, directory, summary):
        from harness.per_example import Reader

        self.reader = Reader(directory)
        rows = summary.itertuples(index=False) if "seed_keys" in summary.columns else []
        self.keys = {(r.dataset, r.model, r.label): list(r.seed_keys) for r in rows}

    def __call__(self, dataset: str, model: str, label: str):
        keys = self.keys.get((dataset, model, label))
        return self.reader.seeds(model, dataset, label, keys) if keys else None


@dataclass(frozen=True)
class ColumnMark:
    """How one estimator group of a column was marked: its best set (whose ``rule`` says which rule),
    the estimator mark ("" outside likelihood columns) and the paired matrix where the rule is paired."""

    estimator: str
    best: BestSet
    matrix: Optional[PairMatrix] = None


def _summary(cell) -> SeedSummary:
    return SeedSummary(cell.mean, cell.stderr if cell.stderr is not None else math.nan, cell.seeds, cell.seeds > 1)


def mark_group(cells: dict, higher_is_better: bool, estimator: str,
               per_example: Optional[Callable] = None, alpha: float = REPORT_ALPHA) -> ColumnMark:
    """Mark the best of ``cells`` (model -> Cell, one estimator group of one column) by the paired rule
    where ``per_example(model)`` gives every model's values on the same examples, else across seeds; sets
    each cell's ``best`` and returns the :class:`ColumnMark`."""
    matrix = None
    if per_example is not None:
        found = {m: per_example(m) for m in cells}
        if all(v is not None for v in found.values()):
            try:
                matrix = paired_matrix(list(found.values()), higher_is_better, alpha)
            except UserError:  # evaluated on other examples: no pairs, the across-seed rule decides
                matrix = None
    best = matrix.best if matrix is not None else best_across_seeds(
        {m: _summary(c) for m, c in cells.items()}, higher_is_better)
    for model, cell in cells.items():
        cell.best = model in best
    return ColumnMark(estimator, best, matrix)


@dataclass
class MatrixView:
    """One paired matrix as the report shows it: the column, the estimator mark, the models ordered best
    first, and the :class:`harness.evidence.PairMatrix`."""

    dataset: str
    label: str
    unit: str
    estimator: str
    matrix: PairMatrix

    @property
    def models(self) -> list:
        sign = -1.0 if self.matrix.higher_is_better else 1.0
        return sorted(self.matrix.models, key=lambda m: sign * self.matrix.means[m])

    @property
    def title(self) -> str:
        kind = f" ({self.estimator})" if self.estimator else ""
        return f"{self.label}{kind}"

    @property
    def caption(self) -> str:
        m = self.matrix
        pairs = len(m.pairs)
        seeds = ("the error covers the test examples and the variation between training runs" if m.seeds_included
                 else "a model has one seed: the errors cover the test examples only")
        return (f"row minus column, ± its standard error, Holm-adjusted p over {pairs} pair{'s' if pairs != 1 else ''}; "
                f"in bold where significant at {m.alpha:g}; {seeds}. Best: {', '.join(m.best.members)}.")


def matrices(table) -> list:
    """The paired matrices of ``table``'s likelihood columns (role likelihood), one per estimator group."""
    out = []
    for col in table.columns:
        if col.role != Role.LIKELIHOOD:
            continue
        for mark in table.marks.get(col.label, []):
            if mark.matrix is not None and len(mark.matrix.models) > 1:
                out.append(MatrixView(table.dataset, col.label, col.unit, mark.estimator, mark.matrix))
    return out


def rule_summary(table) -> str:
    """Which rule marked which columns of ``table``: ``paired test: nll, nll_gap; within standard errors
    over seeds: fid@2000`` ("" when nothing was marked)."""
    by_rule: dict = {}
    for col in table.columns:
        for mark in table.marks.get(col.label, []):
            names = by_rule.setdefault(mark.best.rule, [])
            if col.label not in names:
                names.append(col.label)
    return "; ".join(f"{RULE_NAMES.get(rule, rule)}: {', '.join(labels)}" for rule, labels in by_rule.items())


@dataclass
class SpreadRow:
    """One model's spread between seeds beside its test error, per column label."""

    model: str
    spreads: dict  # label -> SeedSpread


def spread_rows(table) -> list:
    """Per model, the seed spread (:func:`harness.evidence.seed_spread`) of every quality column with a
    direction whose cells carry a test-set error, where the model has at least two seeds; [] when no
    model has."""
    columns = [c for c in table.columns if c.kind == "quality" and c.higher_is_better is not None]
    found: dict = {}
    for model in table.models:
        for col in columns:
            c = table.cell(model, col.label)
            if c is None or c.seeds < 2:
                continue
            values = [v for _, v in c.seed_values]
            own = dict(c.seed_stderrs)
            found.setdefault(model, {})[col.label] = seed_spread(values, [own.get(s) for s, _ in c.seed_values])
    with_error = {label for spreads in found.values() for label, s in spreads.items() if math.isfinite(s.test_stderr)}
    rows = [SpreadRow(model, {label: s for label, s in spreads.items() if label in with_error})
            for model, spreads in found.items()]
    return [row for row in rows if row.spreads]


def spread_text(spread: SeedSpread) -> str:
    """``sd 0.031 / se 0.012 (x2.6, seeds)``: the standard deviation over seeds, the mean test-set error of
    one seed, their ratio and which dominates."""
    from harness.formatting import error

    ratio = f"x{spread.ratio:.2g}" if math.isfinite(spread.ratio) else "-"
    tail = f", {spread.dominant}" if spread.dominant else ""
    return f"sd {error(spread.seed_sd)} / se {error(spread.test_stderr)} ({ratio}{tail})"
