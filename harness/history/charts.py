"""The history site's chart: one metric over commits, every model overlaid, drawn with matplotlib (Agg)
and returned as an inline SVG image.

Each model has its colour; each piece of its curve (one protocol) is drawn apart with its own marker,
never joined to the next, and a dotted vertical line marks the commit where the protocol changed. Error
bars are the standard errors over seeds. A step that made the metric worse is shaded red between its
last good and first bad commit, one that made it better green. The y label says which way is better.
"""

from __future__ import annotations

import math
from typing import Optional

from harness.report.images import Image, encode, figure

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
PIECE_MARKERS = ("o", "s", "^", "D", "v", "P")
WORSE, BETTER = "#d62728", "#2ca02c"
FONT = 8
MAX_TICKS = 24


def colour_of(model: str, models: list) -> str:
    return COLOURS[sorted(models).index(model) % len(COLOURS)]


def direction_label(higher_is_better: Optional[bool]) -> str:
    return {True: "higher is better", False: "lower is better"}.get(higher_is_better, "direction unknown")


def _ticks(ax, commits: list, lo: int, hi: int) -> None:
    shown = [c for c in commits if lo <= c.position <= hi]
    every = max(1, math.ceil(len(shown) / MAX_TICKS))
    shown = shown[::every]
    ax.set_xticks([c.position for c in shown])
    ax.set_xticklabels([c.sha[:7] for c in shown], rotation=90, fontsize=FONT - 1, family="monospace")
    ax.set_xlim(lo - 0.6, hi + 0.6)


def history_chart(title: str, series: list, commits: list, steps: list, unit: str,
                  higher_is_better: Optional[bool]) -> Image:
    """``series``: the Series of one metric (one per model); ``steps``: their Found steps to shade."""
    fig = figure(7.2, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    models = [s.key.model for s in series]
    positions = [p.position for s in series for p in s.points]
    for s in series:
        colour = colour_of(s.key.model, models)
        for i, piece in enumerate(s.pieces()):
            xs = [p.position for p in piece]
            ys = [p.mean for p in piece]
            errs = [p.stderr if p.stderr is not None and math.isfinite(p.stderr) else 0.0 for p in piece]
            ax.errorbar(xs, ys, yerr=errs, color=colour, marker=PIECE_MARKERS[i % len(PIECE_MARKERS)], markersize=3.5,
                        linewidth=1.2, elinewidth=0.8, capsize=2, label=s.key.model if i == 0 else None)
        for position, _ in s.protocol_changes():
            ax.axvline(position - 0.5, color=colour, linestyle=":", linewidth=1.2)
            ax.annotate("protocol changed", (position - 0.5, 1.0), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=FONT - 1, color=colour, ha="right", va="top")
    for f in steps:
        if f.worse is not None:
            ax.axvspan(f.good_position, f.bad_position, color=WORSE if f.worse else BETTER, alpha=0.12, linewidth=0)
    _ticks(ax, commits, min(positions), max(positions))
    ax.set_title(title, fontsize=FONT + 1, loc="left")
    ax.set_ylabel(f"{unit or 'value'} ({direction_label(higher_is_better)})", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=FONT, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return encode(fig, "svg")
