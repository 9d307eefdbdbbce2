"""Which metrics apply to a (model, dataset) pair, and why each of the others does not."""

from __future__ import annotations

from typing import Optional

from harness.contracts import SPEED, Capability
from harness.jobs import Origin


def metrics_for(host, model_spec, dataset_spec, names: Optional[list] = None, origin: Origin = Origin.TRAINED):
    """(metrics that apply, [(metric name, reason) for those that do not]) for one pair; ``names``: the
    metrics or outputs asked for (None: every registered metric).

    For samples another generator drew (``origin`` SAMPLES) only quality metrics that need nothing but
    samples apply: a speed metric would time the adapter that hands the samples out, not the generator."""
    chosen, skipped = [], []
    for name in names or sorted(host.registry.metrics):
        metric = host.metric(name)
        if any(m.name == metric.name for m in chosen) or any(n == metric.name for n, _ in skipped):
            continue  # named twice (by itself and by one of its outputs)
        reason = metric.incompatibility(model_spec, dataset_spec)
        if not reason and origin == Origin.SAMPLES:
            reason = _samples_only_reason(metric)
        if reason:
            skipped.append((metric.name, reason))
        else:
            chosen.append(metric)
    return chosen, skipped


def _samples_only_reason(metric) -> Optional[str]:
    if all(o.kind == SPEED for o in metric.outputs):
        return "a speed metric times a model; external samples come without one"
    if set(metric.requires) != {Capability.SAMPLE}:
        return "external samples give samples only"
    return None
