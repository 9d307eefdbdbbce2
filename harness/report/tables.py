"""Per-dataset comparison tables (models x metric identities) as data: columns carry the metric's
declaration (unit, direction, integer, order, kind, role, headline, highlight), cells the mean, standard
error, estimator mark, seeds and whether the cell is best (or, where the output asks for the worst to be
highlighted, worst) in its column. Markdown, HTML, LaTeX and the terminal render
these (:mod:`harness.report.markdown`, :mod:`harness.report.html`, :mod:`harness.report.latex`,
:mod:`harness.report.terminal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pandas as pd

from harness.comparison import is_speed
from harness.contracts import QUALITY, SPEED, Highlight, LikelihoodKind, Role, split_variant
from harness.formatting import has_error, value_with_error
from harness.summary import summarise

# The estimator marks of likelihoods and their letters.
MARKS = {LikelihoodKind.EXACT: "x", LikelihoodKind.BOUND: "b", LikelihoodKind.ESTIMATE: "e"}

MARK_LEGEND = ("(x) exact, (b) bound: a lower bound on log-likelihood, so the NLL shown is an upper bound, "
               "(e) stochastic estimate")
BEST_RULE = ("Best in column (by the metric's declared direction): the best mean, and every cell whose mean is "
             "within the combined standard error of it, |a - b| <= sqrt(se_a^2 + se_b^2), marked together. "
             "In a likelihood column, exact values, bounds and estimates are ranked separately, and a kind "
             "held by a single model is not marked.")
WORST_RULE = ("Worst in column, where the metric asks for it (outputs of role memorisation, unless they declare "
              "otherwise): the worst mean by the metric's direction and the cells tied with it, marked in place of the "
              "best; for a copy test, the model whose samples lie closest to its training data. The mark picks the "
              "model to look at first: whether it copies, its value against what held-out test data scores says "
              "(the column's description), and so do its nearest training examples.")
VALUES_RULE = ("Values are means over seeds ± standard error (across seeds when there are several, else the "
               "measurement's own).")
LEGEND = f"Marks: {MARK_LEGEND}. {VALUES_RULE} {BEST_RULE} {WORST_RULE}"


@dataclass(frozen=True)
class Column:
    label: str  # the measurement's identity: fid@2000, nll
    metric: str  # the measurement's name: fid, nll
    unit: str = ""
    higher_is_better: Optional[bool] = None
    integer: bool = False
    order: int = 1000
    kind: str = QUALITY  # SPEED for a speed row (:func:`harness.comparison.is_speed`), else QUALITY
    headline: bool = False
    description: str = ""
    role: Optional[Role] = None  # the output's declared role (None: undeclared)
    highlight: Highlight = Highlight.BEST  # which cell its output asks the tables to mark

    @property
    def title(self) -> str:
        """The header: identity and unit, ``nll [nats]``."""
        return f"{self.label} [{self.unit}]" if self.unit else self.label

    @property
    def direction(self) -> str:
        """``lower``, ``higher`` or ``""`` when the direction is unknown."""
        return "" if self.higher_is_better is None else "higher" if self.higher_is_better else "lower"

    @property
    def arrow(self) -> str:
        return {"higher": "↑", "lower": "↓"}.get(self.direction, "")


@dataclass
class Cell:
    mean: float
    stderr: float
    estimator: str
    seeds: int = 1
    seed_values: list = field(default_factory=list)  # (seed, value)
    best: bool = False
    worst: bool = False  # marked worst in a column whose output asks for the worst (Highlight.WORST)

    @property
    def mark(self) -> str:
        """The estimator letter of a likelihood cell (``x``, ``b``, ``e``), else ``""``."""
        return MARKS.get(self.estimator, "")

    def text(self, integer: bool = False, sep: str = " ± ", with_error: bool = True, with_mark: bool = True) -> str:
        """``mean ± stderr (mark)``, without the best marker (each renderer draws its own)."""
        text = value_with_error(self.mean, self.stderr if with_error else None, integer, sep)
        return f"{text} ({self.mark})" if self.mark and with_mark else text


@dataclass
class Table:
    dataset: str
    part: str  # quality, speed, all
    models: list
    columns: list  # [Column], in display order
    cells: dict  # (model, label) -> Cell

    def cell(self, model: str, label: str) -> Optional[Cell]:
        return self.cells.get((model, label))

    def column(self, label: str) -> Column:
        return next(c for c in self.columns if c.label == label)

    def strings(self, best_marker=lambda text: text, sep: str = " ± ", with_error: bool = True,
                worst_marker=lambda text: text) -> pd.DataFrame:
        """The table as formatted strings (index model, columns titles); ``best_marker`` wraps best cells,
        ``worst_marker`` worst ones."""
        data = {}
        for col in self.columns:
            values = []
            for model in self.models:
                c = self.cell(model, col.label)
                if c is None:
                    values.append("")
                    continue
                text = c.text(col.integer, sep, with_error)
                values.append(best_marker(text) if c.best else worst_marker(text) if c.worst else text)
            data[col.title] = values
        frame = pd.DataFrame(data, index=pd.Index(self.models, name="model"))
        return frame


def column_for(label: str, metric: str, unit: str, hib, outputs: Mapping) -> Column:
    """The column of a measurement, from its output's declaration in ``outputs``; an undeclared one is a
    quality column of unknown role."""
    out = outputs.get(metric)
    if out is None:
        return Column(label, metric, unit, hib)
    return Column(label, metric, unit if unit else out.unit, out.higher_is_better if hib is None else hib,
                  out.integer, out.order, SPEED if is_speed(out) else QUALITY, out.headline, out.description, out.role,
                  out.highlight)


def build_tables(summary: pd.DataFrame, outputs: Optional[Mapping] = None, part: str = "all",
                 variants: bool = False) -> dict:
    """dataset -> :class:`Table` from :func:`harness.summary.summarise`'s summary.

    ``part``: ``quality``, ``speed`` or ``all``, by each output's declaration (an undeclared one is
    quality). Sampling variants (identities with a ``[setting]`` suffix) are left out unless
    ``variants``; columns go in the declared order, then by identity; best cells are marked
    (:func:`mark_best`)."""
    outputs = outputs or {}
    tables = {}
    for dataset, g in summary.groupby("dataset", sort=True):
        columns, cells, models = {}, {}, set()
        for r in g.itertuples(index=False):
            if (split_variant(r.label)[1] is not None) != variants:
                continue
            col = columns.get(r.label) or column_for(r.label, r.metric, r.unit, r.higher_is_better, outputs)
            if part in (QUALITY, SPEED) and col.kind != part:
                continue
            columns[r.label] = col
            models.add(r.model)
            cells[(r.model, r.label)] = Cell(r.mean, r.stderr, r.estimator, int(r.seeds), list(r.seed_values))
        if not columns:
            continue
        ordered = sorted(columns.values(), key=lambda c: (c.order, c.label))
        table = Table(str(dataset), part, sorted(models), ordered, cells)
        mark_best(table)
        tables[str(dataset)] = table
    return tables


def _tied(a: Cell, b: Cell) -> bool:
    se = math.hypot(a.stderr if has_error(a.stderr) else 0.0, b.stderr if has_error(b.stderr) else 0.0)
    return abs(a.mean - b.mean) <= se


def mark_best(table: Table) -> None:
    """Mark the best cell of every column with a known direction, and the cells tied with it (see
    :data:`BEST_RULE`); in a column whose output asks for the worst (``Highlight.WORST``), the worst cell
    and the cells tied with it instead (:data:`WORST_RULE`). A column (or a likelihood kind within it)
    with a single model gets no mark."""
    for col in table.columns:
        if col.higher_is_better is None:
            continue
        worst = col.highlight is Highlight.WORST
        groups: dict = {}
        for model in table.models:
            c = table.cell(model, col.label)
            if c is not None and math.isfinite(c.mean):
                c.best = c.worst = False
                groups.setdefault(c.estimator if c.estimator in MARKS else "", []).append(c)
        for group in groups.values():
            if len(group) < 2:
                continue
            highest = col.higher_is_better != worst
            marked = max(group, key=lambda c: c.mean) if highest else min(group, key=lambda c: c.mean)
            for c in group:
                setattr(c, "worst" if worst else "best", c is marked or _tied(c, marked))


def comparison_tables(df: pd.DataFrame, part: str = "all", outputs: Optional[Mapping] = None) -> dict:
    """dataset -> DataFrame of formatted cells (index model, columns ``identity [unit]``); best cells in
    bold (Markdown). Kept for callers that want the plain frames."""
    tables = build_tables(summarise(df), outputs, part)
    out = {}
    for dataset, table in tables.items():
        frame = table.strings(best_marker=lambda t: f"**{t}**")
        frame.index.name = "model"
        frame.columns.name = None
        out[dataset] = frame
    return out
