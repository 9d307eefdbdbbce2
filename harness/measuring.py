"""Measuring a fitted model: each metric's measurements bound to their declarations, a metric's skip or
failure recorded in the job's result, and the same for each of the model's sampling variants."""

from __future__ import annotations

import time
from typing import Optional

import torch

from harness.contracts import (Measurement, MetricContext, MetricSkipped, Role, UndeclaredMeasurement,
                               check_variant_label, variant_identity)
from harness.jobs import JobResult
from harness.time_limit import JobTimeout


def measure(metric, ctx: MetricContext, result: JobResult, variant: Optional[str] = None) -> None:
    """Compute one metric into ``result``: its measurements (bound to their declarations, and to ``variant``
    when measuring a sampling variant), or the metric's skip or failure. Only the job's time limit escapes."""
    name = metric.name if variant is None else variant_identity(metric.name, variant)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        bound = []
        for m in metric.compute(ctx) or []:
            if not isinstance(m, Measurement):
                raise UndeclaredMeasurement(f"metric {metric.name} returned {type(m).__name__}, not Measurement")
            m.variant = variant
            declared = metric.output(m.metric)
            if declared is not None and declared.role == Role.SPEED:
                m.protocol = {**speed_protocol(ctx), **(m.protocol or {})}
            bound.append(metric.bind(m))
    except JobTimeout:
        raise
    except MetricSkipped as exc:
        result.metric_skips.append((name, str(exc)))
        return
    except Exception as exc:
        result.metric_failures.append((name, f"{type(exc).__name__}: {exc}"))
        return
    result.measurements.extend(bound)
    result.details.setdefault("metric_seconds", {})[name] = round(time.perf_counter() - started, 4)
    result.details.setdefault("metric_cpu_seconds", {})[name] = round(time.process_time() - cpu, 4)


def speed_protocol(ctx: MetricContext) -> dict:
    """What every speed figure's protocol holds, whatever its metric records: the device and the number of
    torch threads it was measured with (a figure on two threads is not one on one)."""
    return {"device": str(ctx.device), "torch_threads": torch.get_num_threads()}


def measure_variants(model, metrics: list, context: dict, result: JobResult) -> None:
    """Measure each of the model's sampling variants (:meth:`harness.Model.sampling_variants`) with the
    metrics that measure samples only and applied to the model itself (not skipped at run time).
    ``context``: the keyword arguments of :class:`MetricContext` but the model."""
    variants = model.sampling_variants() or {}
    skipped = {name for name, _ in result.metric_skips}
    sampling = [m for m in metrics if m.measures_samples_only and m.name not in skipped]
    measured = []
    for label, view in variants.items():
        check_variant_label(label)
        if view is model:  # the label names the model's own setting
            result.details["sampling_label"] = label
            continue
        measured.append(label)
        for metric in sampling:
            measure(metric, MetricContext(model=view, **context), result, variant=label)
    if measured:
        result.details["sampling_variants"] = measured
