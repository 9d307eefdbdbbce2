"""The Pareto front of models on two axes (e.g. sample quality against sampling speed)."""

from __future__ import annotations

import math


def dominates(a: tuple, b: tuple, higher: tuple) -> bool:
    """``a`` is at least as good as ``b`` on both axes and better on one (``higher``: per axis, whether
    higher is better)."""
    at_least, better = True, False
    for x, y, up in zip(a, b, higher):
        if (x < y) if up else (x > y):
            at_least = False
        if (x > y) if up else (x < y):
            better = True
    return at_least and better


def pareto_front(points: list, higher: tuple) -> list:
    """Indices of the points no other point dominates, in input order; points with a non-finite
    coordinate are never on the front. ``points``: [(x, y)]; ``higher``: (x higher is better,
    y higher is better)."""
    finite = [i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)]
    return [i for i in finite if not any(dominates(points[j], points[i], higher) for j in finite if j != i)]
