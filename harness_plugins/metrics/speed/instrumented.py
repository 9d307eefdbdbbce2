"""Metrics of one instrumented call: peak memory, FLOPs per sample and per evaluation, achieved FLOP/s.

The achieved FLOP/s comes with its fraction of the GPU's datasheet peak where that is known.

``peak_memory`` is the peak, during one sampling call of ``min(profile.sample_batch, MEMORY_BATCH)``
samples (a fixed batch, unlike the throughput batch, which shrinks when calls are slow), of the memory
the call allocated and had not yet freed (above what was allocated before it): the CUDA allocator's
statistics on a GPU, torch's profiler memory events on a CPU, never a process-wide high-water mark
(:mod:`harness_plugins.metrics.speed.memory`). Where it cannot be measured the metric is skipped with
the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from harness import Measurement, MetricContext
from harness.timing import median, median_stderr
from harness_plugins.metrics.speed.budgets import throughput_budget
from harness_plugins.metrics.speed.calls import cached, evaluation_call, evaluation_target, sampling_call
from harness_plugins.metrics.speed.datasheet import device_peak_flops, model_dtype
from harness_plugins.metrics.speed.details import device_details
from harness_plugins.metrics.speed.flops import FLOP_COUNTER_NOTE, count_flops
from harness_plugins.metrics.speed.memory import MemoryPeak, MemoryUnmeasurable, measure_peak_memory
from harness_plugins.metrics.speed.throughput import batch_choice, sampling_throughput

# peak_memory is measured on one sampling call of this many samples (at most the profile's sample_batch).
MEMORY_BATCH = 256


@dataclass
class Instrumented:
    """One call under the FLOP counter, with the peak memory during it where that was asked for and
    could be measured (else ``memory`` is None and ``memory_missing`` says why)."""

    batch: int
    flops: int
    flops_by_op: dict
    memory: Optional[MemoryPeak] = None
    memory_missing: Optional[str] = None
    memory_batch: Optional[int] = None  # the batch of the call whose memory was measured


def instrumented(ctx: MetricContext, what: str, call_for, target: int, with_memory: bool = False) -> Instrumented:
    """FLOPs of one call at the batch the throughput measurement uses, and (``with_memory``) the peak
    memory of one call at the fixed batch ``min(target, MEMORY_BATCH)`` (one of each per job). The
    throughput batch depends on how fast calls ran (a loaded machine picks a smaller one), so memory is
    measured at a batch that does not: the figure is the same on every run of the same model. Each call
    is prepared (``call_for(batch)``) before the memory measurement starts, so only what the model's
    method allocates is counted."""

    def make():
        batch = batch_choice(ctx, what, call_for, target, throughput_budget(ctx.profile)).batch
        memory, missing, memory_batch = None, None, None
        with torch.no_grad():
            if with_memory:
                memory_batch = min(target, MEMORY_BATCH)
                try:
                    memory = measure_peak_memory(call_for(memory_batch), ctx.device)
                except MemoryUnmeasurable as exc:
                    missing = str(exc)
            flops, by_op = count_flops(call_for(batch))
        return Instrumented(batch, flops, by_op, memory, missing, memory_batch)

    return cached(ctx, ("instrumented", what, target), make)


def sampling_instrumented(ctx: MetricContext) -> Instrumented:
    target = int(ctx.profile.sample_batch)
    return instrumented(ctx, "sample", sampling_call(ctx, target), target, with_memory=True)


def evaluation_instrumented(ctx: MetricContext) -> Instrumented:
    target = evaluation_target(ctx)
    return instrumented(ctx, "evaluate", evaluation_call(ctx, target), target)


def compute_peak_memory(ctx: MetricContext) -> list:
    inst = sampling_instrumented(ctx)
    mem = inst.memory
    if mem is None:
        raise MemoryUnmeasurable(inst.memory_missing or "peak memory was not measured")
    details = {"source": mem.source, "scope": mem.scope, "batch_size": inst.memory_batch,
               "per_sample_bytes": mem.bytes / inst.memory_batch, **device_details(ctx.device)}
    if mem.baseline_bytes is not None:
        details["allocated_before_bytes"] = mem.baseline_bytes
    if mem.allocated_bytes is not None:
        details.update({"allocated_bytes": mem.allocated_bytes, "allocations": mem.allocations})
    return [Measurement("peak_memory", mem.bytes, n=1, details=details)]


def compute_flops_per_sample(ctx: MetricContext) -> list:
    inst = sampling_instrumented(ctx)
    return [Measurement("flops_per_sample", inst.flops / inst.batch, n=inst.batch,
                        details={"batch_size": inst.batch, "total_flops": inst.flops, "flops_by_op": inst.flops_by_op,
                                 "counter": FLOP_COUNTER_NOTE})]


def compute_flops_per_evaluation(ctx: MetricContext) -> list:
    inst = evaluation_instrumented(ctx)
    return [Measurement("flops_per_evaluation", inst.flops / inst.batch, n=inst.batch,
                        details={"batch_size": inst.batch, "total_flops": inst.flops, "flops_by_op": inst.flops_by_op,
                                 "counter": FLOP_COUNTER_NOTE, "split": "test"})]


def compute_achieved_flops(ctx: MetricContext) -> list:
    inst = sampling_instrumented(ctx)
    result = sampling_throughput(ctx)
    rates = result.rates
    per_sample = inst.flops / inst.batch
    achieved = per_sample * median(rates)
    se = median_stderr(rates)
    peak, peak_details = device_peak_flops(ctx.device, model_dtype(ctx.model))
    details = {"flops_per_sample": per_sample, "sample_throughput": median(rates), "batch_size": result.choice.batch,
               "counter": FLOP_COUNTER_NOTE, **peak_details, **device_details(ctx.device)}
    rows = [Measurement("achieved_flops", achieved, stderr=None if se is None else per_sample * se, n=len(rates),
                        details=details)]
    if peak is not None:
        details["peak_fraction"] = achieved / peak
        rows.append(Measurement("achieved_flops_fraction", achieved / peak,
                                stderr=None if se is None else per_sample * se / peak, n=len(rates), details=details))
    return rows
