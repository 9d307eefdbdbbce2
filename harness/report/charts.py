"""The report's charts, drawn with matplotlib (Agg) and returned as inline images:

- likelihood against the dataset's entropy, with error bars, exact / bound / estimate drawn with
  different markers;
- quality against sampling speed, the Pareto front highlighted;
- the spread over seeds of the headline quality numbers;
- quality against speed per sampling variant of one model.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Optional

import numpy as np

from harness.report.images import Image, encode, figure
from harness.report.pareto import pareto_front
from harness.report.tables import Column

# How each estimator kind is drawn: (marker, colour, filled, legend text).
ESTIMATOR_STYLE = {
    "exact": ("o", "#1f77b4", True, "exact"),
    "bound": ("v", "#ff7f0e", True, "bound (true NLL at or below)"),
    "estimate": ("D", "#2ca02c", False, "estimate (stochastic)"),
}
OTHER_STYLE = ("s", "#7f7f7f", True, "mixed kinds")
FRONT_COLOUR = "#d62728"
FONT = 9


@dataclass
class Point:
    model: str
    value: float
    stderr: float
    estimator: str = ""
    label: str = ""  # the column the value comes from


def _err(se: float) -> float:
    return se if se is not None and math.isfinite(se) and se > 0 else 0.0


def _bar(value: float, se: float, log: bool) -> list:
    """An error bar as [[below], [above]]; on a log axis it stops short of zero."""
    e = _err(se)
    return [[min(e, 0.9 * value) if log and value > 0 else e], [e]]


def _style_axes(ax) -> None:
    ax.tick_params(labelsize=FONT)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)


def likelihood_chart(dataset: str, points: list, entropy: Optional[float] = None,
                     entropy_stderr: float = 0.0) -> Optional[Image]:
    """Each model's likelihood (NLL, nats; ± standard error) against the dataset's true entropy, the
    lowest NLL any model can reach. Markers tell exact values, bounds and estimates apart."""
    points = [p for p in points if math.isfinite(p.value)]
    if not points:
        return None
    points = sorted(points, key=lambda p: p.value)
    common = max({p.label for p in points}, key=lambda lab: sum(p.label == lab for p in points))
    fig = figure(max(5.2, 0.6 * len(points) + 2.4), 3.6)
    ax = fig.add_subplot()
    seen = set()
    for i, p in enumerate(points):
        marker, colour, filled, text = ESTIMATOR_STYLE.get(p.estimator, OTHER_STYLE)
        ax.errorbar(i, p.value, yerr=_err(p.stderr), fmt=marker, color=colour, ms=7, capsize=3,
                    mfc=colour if filled else "white", mec=colour, label=None if text in seen else text)
        seen.add(text)
    if entropy is not None and math.isfinite(entropy):
        ax.axhline(entropy, color="black", linestyle="--", linewidth=1,
                   label=f"true entropy {entropy:.3f} nats (lowest reachable NLL)")
        if entropy_stderr and entropy_stderr > 0:
            ax.axhspan(entropy - entropy_stderr, entropy + entropy_stderr, color="black", alpha=0.08)
    ax.set_xticks(range(len(points)))
    ax.set_xticklabels([p.model if p.label == common else f"{p.model}\n({p.label})" for p in points],
                       rotation=30, ha="right", fontsize=FONT)
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.margins(y=0.15)
    ax.set_ylabel(f"{common} [nats], lower is better", fontsize=FONT)
    title = "likelihood vs the dataset's entropy" if entropy is not None else "likelihood (true entropy unknown)"
    ax.set_title(f"{dataset}: {title}", fontsize=FONT + 1)
    _style_axes(ax)
    ax.legend(fontsize=FONT - 1, frameon=False, loc="best")
    fig.tight_layout()
    return encode(fig, "svg")


def _log_axis(values: list) -> bool:
    v = [x for x in values if math.isfinite(x)]
    return bool(v) and min(v) > 0 and max(v) / min(v) > 30


def quality_speed_chart(dataset: str, models: list, quality: list, speed: list, qcol: Column,
                        scol: Column) -> Optional[Image]:
    """Sample quality against sampling speed, one point per model (± standard errors); the models no
    other model beats on both axes (the Pareto front) are highlighted and joined."""
    pts = [(s.value, q.value) for q, s in zip(quality, speed)]
    if not pts:
        return None
    front = set(pareto_front(pts, (bool(scol.higher_is_better), bool(qcol.higher_is_better))))
    xlog, ylog = _log_axis([p[0] for p in pts]), _log_axis([p[1] for p in pts])
    fig = figure(6.0, 3.8)
    ax = fig.add_subplot()
    for i, (model, q, s) in enumerate(zip(models, quality, speed)):
        on = i in front
        ax.errorbar(s.value, q.value, xerr=_bar(s.value, s.stderr, xlog), yerr=_bar(q.value, q.stderr, ylog),
                    fmt="o", color=FRONT_COLOUR if on else "#7f7f7f", ms=7 if on else 5, capsize=2,
                    zorder=3 if on else 2)
        ax.annotate(model, (s.value, q.value), textcoords="offset points", xytext=(5, 4), fontsize=FONT,
                    color="black" if on else "#555555")
    if len(front) > 1:
        line = sorted(pts[i] for i in front)
        ax.plot([p[0] for p in line], [p[1] for p in line], color=FRONT_COLOUR, linewidth=1, alpha=0.7,
                label="Pareto front", zorder=1)
        ax.legend(fontsize=FONT - 1, frameon=False, loc="best")
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
    ax.margins(0.15)
    ax.set_xlabel(f"{scol.title}, {scol.direction} is better", fontsize=FONT)
    ax.set_ylabel(f"{qcol.title}, {qcol.direction} is better", fontsize=FONT)
    ax.set_title(f"{dataset}: quality vs sampling speed (Pareto front in red)", fontsize=FONT + 1)
    _style_axes(ax)
    fig.tight_layout()
    return encode(fig, "svg")


def spread_chart(dataset: str, panels: list) -> Optional[Image]:
    """Per headline column, every seed's value per model (dots) with the mean ± standard error (bar).
    ``panels``: [(Column, [(model, Cell)])]."""
    panels = [(col, cells) for col, cells in panels if cells]
    if not panels:
        return None
    n_models = max(len(cells) for _, cells in panels)
    fig = figure(min(2.6 * len(panels) + 1.0, 11.0), 0.28 * n_models + 1.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (col, cells) in zip(axes, panels):
        for i, (model, cell) in enumerate(cells):
            values = [v for _, v in cell.seed_values]
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(values, [i + j for j in jitter], s=12, color="#1f77b4", alpha=0.6, zorder=2)
            ax.errorbar(cell.mean, i, xerr=_err(cell.stderr), fmt="|", color="black", ms=10, capsize=3, zorder=3)
        ax.set_yticks(range(len(cells)))
        ax.set_yticklabels([m for m, _ in cells], fontsize=FONT)
        ax.set_ylim(-0.6, len(cells) - 0.4)
        ax.set_title(f"{col.title} {col.arrow}", fontsize=FONT)
        _style_axes(ax)
    fig.suptitle(f"{dataset}: spread over seeds (dots: seeds; bar: mean ± standard error)", fontsize=FONT + 1)
    fig.tight_layout()
    return encode(fig, "svg")


def variants_chart(dataset: str, series: list, qcol: Column, scol: Column) -> Optional[Image]:
    """Quality against sampling speed for each sampler setting of a model (a line per model).
    ``series``: [(model, [(variant, quality Point, speed Point)])]."""
    series = [(m, pts) for m, pts in series if pts]
    if not series:
        return None
    fig = figure(5.6, 3.4)
    ax = fig.add_subplot()
    xs, ys = [], []
    for model, pts in series:
        pts = sorted(pts, key=lambda t: t[2].value)
        x, y = [s.value for _, _, s in pts], [q.value for _, q, _ in pts]
        ax.errorbar(x, y, xerr=[_err(s.stderr) for _, _, s in pts], yerr=[_err(q.stderr) for _, q, _ in pts],
                    fmt="o-", ms=5, capsize=2, linewidth=1, label=model)
        for (variant, q, s) in pts:
            ax.annotate(variant, (s.value, q.value), textcoords="offset points", xytext=(4, 4), fontsize=FONT - 1)
        xs += x
        ys += y
    if _log_axis(xs):
        ax.set_xscale("log")
    if _log_axis(ys):
        ax.set_yscale("log")
    ax.set_xlabel(f"{scol.title}, {scol.direction} is better", fontsize=FONT)
    ax.set_ylabel(f"{qcol.title}, {qcol.direction} is better", fontsize=FONT)
    ax.set_title(f"{dataset}: quality vs samples/s per sampler setting", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1, frameon=False, loc="best")
    _style_axes(ax)
    fig.tight_layout()
    return encode(fig, "svg")


def density_card(title: str, extent: tuple, samples: Optional[np.ndarray], log_density: Optional[np.ndarray],
                 vmin: float, vmax: float, notes: tuple = ("", ""), density_extent: Optional[tuple] = None,
                 colorbar: bool = False, sample_label: str = "samples") -> Image:
    """Two panels on the dataset's density grid: the points (a scatter) and the log-density (a heatmap
    on the shared colour scale ``vmin``..``vmax``). A missing panel shows its note instead."""
    # Fixed axes positions (figure fractions): no layout pass, so a card costs one draw.
    fig = figure(5.2 if colorbar else 4.6, 2.5)
    if colorbar:
        left, right = fig.add_axes((0.075, 0.12, 0.33, 0.68)), fig.add_axes((0.49, 0.12, 0.33, 0.68))
        bar = fig.add_axes((0.85, 0.12, 0.02, 0.68))
    else:
        left, right = fig.add_axes((0.09, 0.12, 0.38, 0.68)), fig.add_axes((0.58, 0.12, 0.38, 0.68))
        bar = None
    x0, x1, y0, y1 = extent
    for ax in (left, right):
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("auto")
        ax.tick_params(labelsize=FONT - 2, length=2)
    if samples is not None and len(samples):
        inside = ((samples[:, 0] >= x0) & (samples[:, 0] <= x1) & (samples[:, 1] >= y0) & (samples[:, 1] <= y1))
        left.scatter(samples[:, 0], samples[:, 1], s=5, color="#1f77b4", alpha=0.8, linewidths=0)
        outside = int((~inside).sum())
        left.set_title(f"{sample_label} ({len(samples)}" + (f", {outside} off the axes)" if outside else ")"),
                       fontsize=FONT - 1)
    else:
        left.text(0.5, 0.5, textwrap.fill(notes[0] or f"no {sample_label}", 20), ha="center", va="center",
                  fontsize=FONT - 1, color="#777777", transform=left.transAxes)
        left.set_title(sample_label, fontsize=FONT - 1)
    if log_density is not None:
        image = right.imshow(np.where(np.isfinite(log_density), log_density, vmin), origin="lower",
                             extent=density_extent or extent, vmin=vmin, vmax=vmax, cmap="viridis",
                             aspect="auto", interpolation="nearest")
        right.set_title("log-density", fontsize=FONT - 1)
        if bar is not None:
            cb = fig.colorbar(image, cax=bar, extend="both")
            cb.ax.tick_params(labelsize=FONT - 2)
            cb.set_label("log p(x) [nats]", fontsize=FONT - 2)
    else:
        right.text(0.5, 0.5, textwrap.fill(notes[1] or "no log-density", 20), ha="center", va="center",
                   fontsize=FONT - 1, color="#777777", transform=right.transAxes)
        right.set_title("log-density", fontsize=FONT - 1)
        if bar is not None:
            bar.set_visible(False)
    fig.suptitle(title, fontsize=FONT, y=0.98)
    return encode(fig, "png")
