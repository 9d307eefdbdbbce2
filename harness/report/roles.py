"""Which measurements a chart or the terminal summary shows, chosen from the metrics' declarations
alone (the core holds no metric name):

- the **likelihood** of a model on a dataset: among its rows carrying a likelihood mark (exact, bound,
  estimate) in nats, lower is better, the one whose output comes first in the declared order (the
  test NLL where the model has one, a Parzen estimate for a sampler without a likelihood);
- the **quality** axis: the first headline quality output that is a sample statistic;
- the **speed** axis: the first headline speed output;
- the **headline** columns of the terminal summary: every output declared ``headline``.
"""

from __future__ import annotations

from typing import Optional

from harness.contracts import QUALITY, SPEED
from harness.report.tables import MARKS, Column, Table

# The unit of DatasetSpec.entropy (and of a likelihood that can be set against it).
ENTROPY_UNIT = "nats"


def likelihood_column(table: Table, model: str) -> Optional[Column]:
    """The column holding ``model``'s likelihood on the table's dataset (see the module doc)."""
    for col in table.columns:  # declared order
        c = table.cell(model, col.label)
        if c is None or col.unit != ENTROPY_UNIT or col.higher_is_better is not False:
            continue
        if all(part.strip() in MARKS for part in c.estimator.split("|")):
            return col
    return None


def _first(table: Table, wanted) -> Optional[Column]:
    """The wanted column held by the most models, the first in declared order among equals."""
    found = [c for c in table.columns if wanted(c)]
    if not found:
        return None
    held = {c.label: sum(table.cell(m, c.label) is not None for m in table.models) for c in found}
    return max(found, key=lambda c: (held[c.label], -found.index(c)))


def quality_column(table: Table, estimators: dict) -> Optional[Column]:
    """The quality axis: the first headline sample statistic, else the first sample statistic.
    ``estimators``: label -> the estimator its cells carry."""
    stat = lambda c: (c.kind == QUALITY and estimators.get(c.label) == "statistic"  # noqa: E731
                      and c.higher_is_better is not None)
    return _first(table, lambda c: stat(c) and c.headline) or _first(table, stat)


def speed_column(table: Table) -> Optional[Column]:
    """The speed axis: the first headline speed output (a rate or a time), else the first speed output."""
    known = lambda c: c.kind == SPEED and c.higher_is_better is not None  # noqa: E731
    return _first(table, lambda c: known(c) and c.headline) or _first(table, known)


def estimators_by_label(table: Table) -> dict:
    out = {}
    for (model, label), c in table.cells.items():
        out.setdefault(label, c.estimator)
    return out


def headline_columns(table: Table) -> list:
    """The columns declared headline, in order; every column when none is."""
    chosen = [c for c in table.columns if c.headline]
    return chosen or list(table.columns)
