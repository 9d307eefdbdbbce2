"""Nearest training examples of an image dataset's section: each model's saved samples beside their
nearest training images, closest first, the distance under each pair and the copy threshold marked.

The core names no metric here. A metric that measures how close samples lie to the training split
offers the neighbours through ``MetricSpec.neighbours`` (:mod:`harness.contracts.neighbours`): each
sample's nearest training example, the distance in the metric's own space and the distance at or below
which it counts a sample as a copy. The panels are drawn for an image dataset on which the run measured
an output of such a metric (the first by name when several offer it), from the saved samples of the
job :func:`harness.report.panels.shown_jobs` shows per model; the held-out test images come first, as
the yardstick (new data, what a model that does not copy looks like). Models follow in the order of
their samples' median distance, closest first.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from harness.artifacts import SAMPLES_FILE
from harness.contracts import MetricSkipped, NeighbourQuery
from harness.jobs import JobStatus
from harness.report.images import Image, encode, figure, to_unit
from harness.report.panels import Panel, channels, load_npy, profile_of, reference_indices, shown_jobs

SHOWN = 16  # pairs drawn per model: its saved samples closest to a training example
PER_ROW = 8  # pairs per row of a figure
COPY_COLOUR = "#c62828"


def offering_metric(run, dataset: str):
    """The :class:`harness.contracts.MetricSpec` that offers nearest training examples and one of whose
    outputs the run measured on ``dataset`` (the first by name), or None."""
    host = getattr(run.source, "host", None)
    if host is None or run.results.empty:
        return None
    df = run.results
    measured = set(df[(df["dataset"] == dataset) & (df["status"] == JobStatus.OK)]["metric"].dropna())
    for _, spec in sorted(host.registry.metrics.items()):
        if spec.neighbours is not None and measured & set(spec.output_names):
            return spec
    return None


def dataset_neighbour_panels(run, dataset: str) -> tuple:
    """``(panels, note)`` of one dataset's section: nothing for data that are not images or where no
    measured metric offers neighbours; otherwise the note says how to read the panels (or why there
    are none)."""
    spec = run.source.spec(dataset) if run.source is not None else None
    if spec is None or len(tuple(spec.event_shape)) != 3:
        return [], ""
    metric = offering_metric(run, dataset)
    if metric is None:
        return [], ""
    profile = profile_of(run.results)
    if profile is None:
        return [], "nearest training examples: the results hold several profiles or an unknown one"
    data, reason = run.source.load(dataset)
    if data is None:
        return [], f"nearest training examples: {reason}"
    jobs = shown_jobs(run.results, dataset, run.directory)
    run_cache: dict = {}

    def ask(samples: np.ndarray):
        query = NeighbourQuery(data, torch.as_tensor(np.asarray(samples, dtype=np.float32)), profile,
                               run.source.host.registry.feature_extractors, data_root=run.source.cache.data_root,
                               cache_dir=run.directory / "cache", run_cache=run_cache)
        return metric.neighbours(query)

    levels = getattr(spec, "levels", None)
    test = data.test.x[reference_indices(len(data.test), run.eval_examples)].numpy()
    try:
        found = ask(test)
    except MetricSkipped as exc:
        return [], f"nearest training examples: {metric.name} cannot find them here: {exc}"
    train = data.train.x
    caption = _caption(found, len(test), "the first test images of the evaluation subset")
    reference = Panel("test data (new data)", caption, _pairs_figure(test, train, found, levels), reference=True)
    cards = []
    for model, job in jobs.items():
        samples, problem = load_npy(job.file(SAMPLES_FILE))
        if samples is None or samples.ndim != 4:
            cards.append((math.inf, Panel(model, f"seed {job.seed}", note=problem or "no samples saved for this job")))
            continue
        got = ask(samples)
        cards.append((float(np.median(got.distance)), Panel(model, _caption(got, len(samples), f"seed {job.seed}"),
                                                             _pairs_figure(samples, train, got, levels))))
    cards.sort(key=lambda card: card[0])
    return [reference] + [panel for _, panel in cards], _note(found, metric.name)


def _within(found) -> np.ndarray:
    if found.threshold is None:
        return np.zeros(len(found.distance), dtype=bool)
    return found.distance <= found.threshold


def _caption(found, n: int, what: str) -> str:
    median = float(np.median(found.distance)) if found.distance.size else math.nan
    text = f"{what}: median distance {median:.3g}"
    if found.threshold is not None:
        text += f", {int(_within(found).sum())} of {n} at or within the copy threshold"
    return text


def _note(found, metric: str) -> str:
    line = (f"Each model's saved samples, the {SHOWN} closest to a training example first, each beside its nearest "
            f"training image (left: sample, right: training image), the distance in {found.space} (from {metric}) "
            "under each pair. Models in the order of their median distance, closest first; the test images first, "
            "as new data.")
    if found.threshold is not None:
        line += (f" Red: at or within the copy threshold, distance {found.threshold:.3g} "
                 f"({found.threshold_note}).")
    return line


def _pairs_figure(samples: np.ndarray, train: torch.Tensor, found, levels: Optional[int]) -> Image:
    """The :data:`SHOWN` closest pairs, :data:`PER_ROW` a row: sample and training image side by side, the
    distance under them, red (frame and number) at or within the threshold."""
    order = np.argsort(found.distance, kind="stable")[:SHOWN]
    left = to_unit(channels(np.asarray(samples)[order]), levels)
    right = to_unit(channels(train[torch.as_tensor(found.index[order])].numpy()), levels)
    count, c, h, w = left.shape
    cols, rows = min(PER_ROW, count), -(-count // PER_ROW)
    pad, text = max(2, w // 3), max(4, (2 * h) // 3)
    cell_w, cell_h = 2 * w + 1 + pad, h + text
    canvas = np.ones((rows * cell_h, cols * cell_w - pad, 3))
    within = _within(found)[order]
    fig = figure(max(3.0, 0.9 * cols), 0.9 * cols * canvas.shape[0] / canvas.shape[1] + 0.1)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    spots = []
    for i in range(count):
        y, x = (i // PER_ROW) * cell_h, (i % PER_ROW) * cell_w
        canvas[y:y + h, x:x + w] = _rgb(left[i])
        canvas[y:y + h, x + w] = 0.5
        canvas[y:y + h, x + w + 1:x + 2 * w + 1] = _rgb(right[i])
        spots.append((x, y))
    ax.imshow(canvas, interpolation="nearest", vmin=0.0, vmax=1.0)
    from matplotlib.patches import Rectangle

    for i, (x, y) in enumerate(spots):
        colour = COPY_COLOUR if within[i] else "#333333"
        if within[i]:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 2 * w + 1, h, fill=False, edgecolor=COPY_COLOUR, linewidth=1.5))
        ax.text(x + w, y + h + 0.15 * text, f"{found.distance[order][i]:.3g}", ha="center", va="top", fontsize=7,
                color=colour)
    ax.set_xlim(-1, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], -1)
    return encode(fig, "png")


def _rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) with 1 or 3 channels -> (H, W, 3)."""
    x = np.moveaxis(image, 0, -1)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
