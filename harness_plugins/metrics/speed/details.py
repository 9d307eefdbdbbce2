"""What every speed measurement records beside its value: the device, the batch, the spread and the timing."""

from __future__ import annotations

import platform

import torch

from harness import Measurement, MetricContext
from harness.timing import Budget, Timing, median, median_stderr, quantile
from harness_plugins.metrics.speed.batching import BatchChoice


def device_name(device) -> str:
    """The GPU's name on CUDA (``torch.cuda.get_device_name``); the processor on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return platform.processor() or platform.machine() or "cpu"


def device_details(device) -> dict:
    return {"device": str(device), "device_name": device_name(device), "threads": torch.get_num_threads()}


def batch_details(choice: BatchChoice, budget: Budget) -> dict:
    details = {"batch_size": choice.batch, "requested_batch_size": choice.target, "ramp_calls": choice.calls,
               "ramp": [[b, t] for b, t in choice.probes]}
    if choice.reduced:
        details["batch_note"] = (f"a call at batch {choice.target} was predicted to take longer than the profile's "
                                 f"time budget allows ({budget.max_call_seconds:.3g} s, or 4 one-sample calls)")
    return details


def spread_details(values: list, unit: str) -> dict:
    return {"unit_of_spread": unit, "p05": quantile(values, 0.05), "p25": quantile(values, 0.25),
            "p75": quantile(values, 0.75), "p95": quantile(values, 0.95)}


def timing_details(timing: Timing) -> dict:
    return {"repeats": timing.repeats, "calls_per_repeat": timing.calls_per_repeat,
            "warmup_calls": timing.warmup_calls, "timer": timing.clock,
            "median_seconds_per_call": timing.median, "timed_seconds": sum(timing.seconds)}


def rate_measurement(metric: str, unit: str, result, ctx: MetricContext, budget: Budget, **extra) -> Measurement:
    """The median rate of ``result`` (a :class:`~harness_plugins.metrics.speed.throughput.Throughput`)
    with its standard error, and every detail of how it was measured."""
    rates = result.rates
    return Measurement(
        metric, median(rates), unit, stderr=median_stderr(rates), n=len(rates),
        details={**batch_details(result.choice, budget), **spread_details(rates, unit), **timing_details(result.timing),
                 **device_details(ctx.device), **extra},
        protocol={"batch_size": result.choice.target},  # the batch asked for; the runner adds device and threads
    )
