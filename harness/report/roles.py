"""Which measurements a chart or the terminal summary shows, chosen from the outputs' declared roles
alone (the core holds no metric name and reads no unit):

- the **likelihood** of a model on a dataset: among the columns whose output declares role
  ``likelihood`` (a negative log-likelihood per example in nats, lower is better) and whose cells carry
  a likelihood mark (exact, bound, estimate), the first in the declared order (the test NLL where the
  model has one, a Parzen estimate for a sampler without a likelihood);
- the **quality** axis: the first headline output of role ``sample_quality``, else the first such;
- the **speed** axis: the first headline output of role ``speed``, else the first such;
- the **headline** columns of the terminal summary: every output declared ``headline``.
"""

from __future__ import annotations

from typing import Optional

from harness.contracts import Role
from harness.report.tables import MARKS, Column, Table


def likelihood_column(table: Table, model: str) -> Optional[Column]:
    """The column holding ``model``'s likelihood on the table's dataset (see the module doc)."""
    for col in table.columns:  # declared order
        c = table.cell(model, col.label)
        if c is None or col.role != Role.LIKELIHOOD:
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


def _axis(table: Table, role: Role) -> Optional[Column]:
    """The first headline column of ``role`` with a known direction, else the first such column."""
    known = lambda c: c.role == role and c.higher_is_better is not None  # noqa: E731
    return _first(table, lambda c: known(c) and c.headline) or _first(table, known)


def quality_column(table: Table) -> Optional[Column]:
    """The quality axis: the first headline sample-quality output, else the first one."""
    return _axis(table, Role.SAMPLE_QUALITY)


def speed_column(table: Table) -> Optional[Column]:
    """The speed axis: the first headline speed output (a rate or a time), else the first speed output."""
    return _axis(table, Role.SPEED)


def headline_columns(table: Table) -> list:
    """The columns declared headline, in order; every column when none is."""
    chosen = [c for c in table.columns if c.headline]
    return chosen or list(table.columns)
