"""Per-dataset comparison tables (models x metric identities) as data: columns carry the metric's
declaration (unit, direction, integer, order, kind, role, headline, highlight), cells the mean over
seeds, its standard error, estimator mark, seeds, protocol and whether the cell is best (or, where the
output asks for the worst to be highlighted, worst) in its column, and each table how its columns were
marked (:mod:`harness.report.evidence`: the paired rule where per-example values exist, else the
across-seed rule). Markdown, HTML, LaTeX and the terminal render these
(:mod:`harness.report.markdown`, :mod:`harness.report.html`, :mod:`harness.report.latex`,
:mod:`harness.report.terminal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import pandas as pd

from harness.comparison import is_speed
from harness.contracts import QUALITY, SPEED, Highlight, LikelihoodKind, Role, split_variant
from harness.formatting import setting, value_with_error
from harness.report.evidence import REPORT_ALPHA, mark_group, rule_summary
from harness.summary import summarise

# The estimator marks of likelihoods and their letters.
MARKS = {LikelihoodKind.EXACT: "x", LikelihoodKind.BOUND: "b", LikelihoodKind.ESTIMATE: "e"}

MARK_LEGEND = ("(x) exact, (b) bound: a lower bound on log-likelihood, so the NLL shown is an upper bound, "
               "(e) stochastic estimate")
BEST_RULE = ("Best in column (by the metric's declared direction): the best mean, and every model not "
             "distinguishable from it, marked together. Where every model kept per-example values on the same "
             "test examples (likelihoods), by the paired test: not significantly worse at level {alpha:g}, "
             "Holm-corrected over all pairs of the column. Elsewhere (sample statistics, speed), within the "
             "combined standard error over seeds, |a - b| <= sqrt(se_a^2 + se_b^2). Each table says which rule "
             "marked which column. In a likelihood column, exact values, bounds and estimates are ranked "
             "separately, and a kind held by a single model is not marked.")
WORST_RULE = ("Worst in column, where the metric asks for it (outputs of role memorisation, unless they declare "
              "otherwise): the worst mean by the metric's direction and the cells tied with it, marked in place of the "
              "best; for a copy test, the model whose samples lie closest to its training data. The mark picks the "
              "model to look at first: whether it copies, its value against what held-out test data scores says "
              "(the column's description), and so do its nearest training examples.")
VALUES_RULE = ("Values are means over seeds ± the standard error over seeds (sd / sqrt(seeds)); the seeds column "
               "says how many. With one seed the ± is that one trained model's test-set error: the variation "
               "between training runs, usually larger, is not in it.")


def legend(alpha: float = REPORT_ALPHA) -> str:
    """The legend of the tables at the report's declared level."""
    return f"Marks: {MARK_LEGEND}. {VALUES_RULE} {BEST_RULE.format(alpha=alpha)} {WORST_RULE}"


LEGEND = legend()


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
    seed_stderrs: list = field(default_factory=list)  # (seed, the measurement's own standard error or NaN)
    protocol: Optional[dict] = None  # the settings that change what the number means (None: not recorded)

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
    marks: dict = field(default_factory=dict)  # label -> [ColumnMark]: how each estimator group was marked

    def cell(self, model: str, label: str) -> Optional[Cell]:
        return self.cells.get((model, label))

    def seeds_text(self, model: str) -> str:
        """How many seeds the model's cells hold: ``3``, or ``1-3`` where they differ."""
        counts = sorted({c.seeds for (m, _), c in self.cells.items() if m == model})
        return "" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"

    @property
    def one_seed(self) -> list:
        """The models with a cell of one seed (their ± leaves out the variation between training runs)."""
        return sorted({m for (m, _), c in self.cells.items() if c.seeds == 1})

    def rules(self) -> str:
        """Which rule marked which columns (:func:`harness.report.evidence.rule_summary`)."""
        return rule_summary(self)

    def protocols(self) -> list:
        """(column labels, their protocol as text) for the columns whose cells recorded one, columns with
        the same text together: the settings every model shares, then those that differ by model
        (:func:`protocol_text`)."""
        grouped: dict = {}
        for col in self.columns:
            found = {m: c.protocol for m in self.models if (c := self.cell(m, col.label)) is not None
                     and c.protocol is not None}
            text = protocol_text(found)
            if text:
                grouped.setdefault(text, []).append(col.label)
        return [(", ".join(labels), text) for text, labels in grouped.items()]

    def strings(self, best_marker=lambda text: text, sep: str = " ± ", with_error: bool = True,
                worst_marker=lambda text: text) -> pd.DataFrame:
        """The table as formatted strings (index model; columns: ``seeds``, then the titles); ``best_marker`` wraps best cells,
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
        frame.insert(0, SEEDS_COLUMN, [self.seeds_text(m) for m in self.models])
        return frame


SEEDS_COLUMN = "seeds"


def protocol_text(protocols: Mapping[str, dict]) -> str:
    """model -> protocol as one line: ``split test, examples 1000; importance_samples: vae 64, cvae 64``
    (settings shared by every model first, then the others with each model's value)."""
    if not protocols:
        return ""
    keys = sorted({k for p in protocols.values() for k in p})
    shared, varied = [], []
    for key in keys:
        values = {m: p.get(key) for m, p in protocols.items() if key in p}
        distinct = {setting(v) for v in values.values()}
        if len(values) == len(protocols) and len(distinct) == 1:
            shared.append(f"{key} {distinct.pop()}")
        else:
            varied.append(f"{key}: " + ", ".join(f"{m} {setting(v)}" for m, v in sorted(values.items())))
    return "; ".join(([", ".join(shared)] if shared else []) + varied)


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
                 variants: bool = False, per_example: Optional[Callable] = None, alpha: Optional[float] = None) -> dict:
    """dataset -> :class:`Table` from :func:`harness.summary.summarise`'s summary.

    ``part``: ``quality``, ``speed`` or ``all``, by each output's declaration (an undeclared one is
    quality). Sampling variants (identities with a ``[setting]`` suffix) are left out unless
    ``variants``; columns go in the declared order, then by identity; best cells are marked
    (:func:`mark_best`; ``per_example(dataset, model, label)`` gives a cell's per-example values over its
    seeds, or None, for the paired rule at level ``alpha``)."""
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
            cells[(r.model, r.label)] = Cell(r.mean, r.stderr, r.estimator, int(r.seeds), list(r.seed_values),
                                             seed_stderrs=list(getattr(r, "seed_stderrs", []) or []),
                                             protocol=getattr(r, "protocol", None))
        if not columns:
            continue
        ordered = sorted(columns.values(), key=lambda c: (c.order, c.label))
        table = Table(str(dataset), part, sorted(models), ordered, cells)
        mark_best(table, per_example, alpha)
        tables[str(dataset)] = table
    return tables


def mark_best(table: Table, per_example: Optional[Callable] = None, alpha: Optional[float] = None) -> None:
    """Mark the best cell of every column with a known direction, and the cells not distinguishable from
    it (see :data:`BEST_RULE` and :mod:`harness.report.evidence`), within each estimator mark; in a column
    whose output asks for the worst (``Highlight.WORST``), the worst cell and the cells not distinguishable
    from it instead, by the same rule with the direction reversed (:data:`WORST_RULE`). A column (or a
    likelihood kind within it) with a single model gets no mark. ``table.marks`` records, per column, each
    group's marked set and rule and, for the paired rule, its matrix."""
    alpha = REPORT_ALPHA if alpha is None else alpha
    table.marks = {}
    for col in table.columns:
        if col.higher_is_better is None:
            continue
        worst = col.highlight is Highlight.WORST
        groups: dict = {}
        for model in table.models:
            c = table.cell(model, col.label)
            if c is not None and math.isfinite(c.mean):
                c.best = c.worst = False
                groups.setdefault(c.estimator if c.estimator in MARKS else "", {})[model] = c
        for estimator, group in groups.items():
            if len(group) < 2:
                continue
            lookup = None if per_example is None else (
                lambda model, label=col.label: per_example(table.dataset, model, label))
            mark = mark_group(group, col.higher_is_better != worst, estimator, lookup, alpha)
            if worst:  # the "best" by the reversed direction is the column's worst
                for c in group.values():
                    c.worst, c.best = c.best, False
            table.marks.setdefault(col.label, []).append(mark)


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
