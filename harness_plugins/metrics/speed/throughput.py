"""Throughput and latency metrics: sampling, evaluation and training rates, one-sample latency, GPU rate.

A sampling (or evaluation) call is made at the profile's ``sample_batch`` unless a call that large
would not leave room for the declared repeats inside the time budget (:mod:`.budgets`); the batch is
then the largest power of two that does (:func:`~harness_plugins.metrics.speed.batching.choose_batch`),
and details say so (``batch_size``, ``requested_batch_size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from harness import Measurement, MetricContext, MetricSkipped
from harness.timing import Budget, Timing, median, quantile, quantile_stderr, time_within
from harness_plugins.metrics.speed.batching import BatchChoice, choose_batch
from harness_plugins.metrics.speed.budgets import latency_budget, throughput_budget
from harness_plugins.metrics.speed.calls import (cached, evaluation_call, evaluation_target, is_conditional,
                                                 sampling_call)
from harness_plugins.metrics.speed.details import device_details, rate_measurement, spread_details, timing_details

# The GPU variant samples at this many times the profile's batch, up to GPU_MAX_BATCH.
GPU_BATCH_FACTOR = 16
GPU_MAX_BATCH = 16384


@dataclass
class Throughput:
    """Timed calls at ``choice.batch`` items per call."""

    choice: BatchChoice
    timing: Timing

    @property
    def rates(self) -> list:
        return self.timing.rates(self.choice.batch)


def batch_choice(ctx: MetricContext, what: str, call_for, target: int, budget: Budget) -> BatchChoice:
    """The job's batch for ``what`` calls up to ``target`` under ``budget`` (chosen once per job)."""

    def make():
        with torch.no_grad():
            return choose_batch(lambda b: call_for(b)(), target, ctx.device, budget.max_call_seconds)

    return cached(ctx, ("batch", what, target), make)


def throughput(ctx: MetricContext, what: str, call_for, target: int, budget: Budget) -> Throughput:
    """The job's timed ``what`` calls at its chosen batch (measured once per job)."""

    def make():
        choice = batch_choice(ctx, what, call_for, target, budget)
        with torch.no_grad():
            timing = time_within(call_for(choice.batch), ctx.device, budget, warm_call_seconds=choice.call_seconds)
        return Throughput(choice, timing)

    return cached(ctx, ("throughput", what, target), make)


def sampling_throughput(ctx: MetricContext) -> Throughput:
    target = int(ctx.profile.sample_batch)
    return throughput(ctx, "sample", sampling_call(ctx, target), target, throughput_budget(ctx.profile))


def evaluation_throughput(ctx: MetricContext) -> Throughput:
    target = evaluation_target(ctx)
    return throughput(ctx, "evaluate", evaluation_call(ctx, target), target, throughput_budget(ctx.profile))


def sampling_batch_choice(ctx: MetricContext) -> BatchChoice:
    target = int(ctx.profile.sample_batch)
    return batch_choice(ctx, "sample", sampling_call(ctx, target), target, throughput_budget(ctx.profile))


def sampling_latency(ctx: MetricContext) -> Timing:
    """One-sample calls timed one at a time. The batch choice for sampling has already made (and
    timed) a warm one-sample call, so no further warm-up is needed."""

    def make():
        warm = dict(sampling_batch_choice(ctx).probes).get(1)
        with torch.no_grad():
            return time_within(sampling_call(ctx, 1)(1), ctx.device, latency_budget(ctx.profile),
                               warm_call_seconds=warm)

    return cached(ctx, ("latency",), make)


def compute_sample_throughput(ctx: MetricContext) -> list:
    result = sampling_throughput(ctx)
    return [rate_measurement("sample_throughput", "samples/s", result, ctx, throughput_budget(ctx.profile),
                             conditional=is_conditional(ctx))]


def compute_sample_latency(ctx: MetricContext) -> list:
    timing = sampling_latency(ctx)
    ms = [s * 1e3 for s in timing.per_call]
    details = {"batch_size": 1, **spread_details(ms, "ms"), **timing_details(timing), **device_details(ctx.device)}
    return [
        Measurement("sample_latency_p50", median(ms), stderr=quantile_stderr(ms, 0.5), n=len(ms), details=details,
                    protocol={"batch_size": 1}),
        Measurement("sample_latency_p95", quantile(ms, 0.95), stderr=quantile_stderr(ms, 0.95), n=len(ms),
                    details=details, protocol={"batch_size": 1}),
    ]


def compute_eval_throughput(ctx: MetricContext) -> list:
    result = evaluation_throughput(ctx)
    return [rate_measurement("eval_throughput", "examples/s", result, ctx, throughput_budget(ctx.profile),
                             split="test", evaluation_examples="ctx.evaluation_split(batch_size)",
                             conditional=is_conditional(ctx))]


def compute_train_throughput(ctx: MetricContext) -> list:
    fit = ctx.fit
    if fit is None:  # a model loaded from saved weights: it was trained elsewhere, nothing here to time
        raise MetricSkipped("the model was loaded, not trained, in this job: there is no fit to time")
    if fit.examples <= 0 or fit.seconds <= 0:
        raise MetricSkipped("the fit reported no training examples through ctx.step (a model measured as built, "
                            "or one whose fit does not report its steps): there is nothing to time")
    seconds = float(fit.seconds)
    return [Measurement(
        "train_throughput", fit.examples / seconds, n=1,
        details={"examples": fit.examples, "steps": fit.steps, "fit_seconds": seconds,
                 "steps_per_second": fit.steps / seconds,
                 "note": "one measurement: the whole fit (everything the model did in fit) divided into the examples "
                         "it reported through ctx.step; no repeats, so no spread",
                 **device_details(ctx.device)},
    )]


def cuda_unavailable(model_spec=None, dataset_spec=None) -> Optional[str]:
    """MetricSpec.applies of the GPU variants: the reason they cannot run, or None."""
    return None if torch.cuda.is_available() else "no CUDA device available"


class NotOnCuda(MetricSkipped):
    """A GPU metric in a run whose device is not CUDA (on a machine that has one): recorded as skipped."""


def compute_gpu_sample_throughput(ctx: MetricContext) -> list:
    if ctx.device.type != "cuda":
        raise NotOnCuda(f"this run's device is {ctx.device}; GPU metrics measure runs with --device cuda")
    target = min(GPU_BATCH_FACTOR * int(ctx.profile.sample_batch), GPU_MAX_BATCH)
    budget = throughput_budget(ctx.profile, scale=2.0)
    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    halvings = 0
    while True:
        try:
            result = throughput(ctx, "sample", sampling_call(ctx, target), target, budget)
            break
        except out_of_memory:
            if target <= 1 or halvings >= 6:
                raise
            torch.cuda.empty_cache()
            target, halvings = target // 2, halvings + 1
    extra = {"conditional": is_conditional(ctx)}
    if halvings:
        extra["oom_note"] = f"the batch was halved {halvings} time(s) after running out of GPU memory"
    return [rate_measurement("gpu_sample_throughput", "samples/s", result, ctx, budget, **extra)]
