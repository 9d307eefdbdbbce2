"""Speed metrics: how fast a fitted model samples, evaluates and trained, how much memory a sampling
call allocates and how many FLOPs it does.

Every timing follows one recipe (harness_plugins.metrics.timing): a warm-up, then timed repeats inside a time budget
set by the profile; a repeat is a block of several calls when calls are shorter than a couple of
milliseconds, so nothing but the calls and the device synchronisation is timed. The value is the
median over repeats, with its Maritz-Jarrett standard error and the 5th/25th/75th/95th percentiles
in details. CUDA work is timed with CUDA events.

A sampling (or evaluation) call is made at the profile's ``sample_batch`` unless a call that large
would not leave room for the profile's ``timing_repeats`` repeats inside the budget; the batch is then
the largest power of two that does, and details say so (``batch_size``, ``requested_batch_size``).

The metrics of one job share their calls: the batch choice, the timings and the one instrumented call
(FLOP counter and peak memory) are made once per job and reused, whichever metric asks first.

Evaluation calls score test examples from ``ctx.evaluation_split(b)`` (a call at batch b scores the
first b examples of the fixed evaluation permutation), the examples the likelihood metrics use.

``peak_memory`` is the peak, during one sampling call of ``min(profile.sample_batch, MEMORY_BATCH)``
samples (a fixed batch, unlike the throughput batch, which shrinks when calls are slow), of the memory the call
allocated and had not yet freed (above what was allocated before it): the CUDA allocator's statistics
on a GPU, torch's profiler memory events on a CPU, never a process-wide high-water mark. Why the
profiler and what it does not see: :mod:`harness_plugins.metrics.timing`. Where it cannot be
measured the metric is skipped with the reason.

Metrics: sample_throughput, sample_latency (sample_latency_p50 and sample_latency_p95),
eval_throughput, train_throughput, peak_memory, flops_per_sample, flops_per_evaluation,
achieved_flops (and achieved_flops_fraction where the device's peak is known) and the GPU variant
gpu_sample_throughput (skipped with its reason when no CUDA device is available).
"""

from __future__ import annotations

import functools
import math
import re
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness import Capability, Measurement, MetricContext, MetricSkipped, MetricSpec, Output, Scaling, hookimpl
from harness.contracts import SPEED, SPEED_TOLERANCE
from harness_plugins.metrics.timing import (
    BatchChoice,
    Budget,
    MemoryPeak,
    MemoryUnmeasurable,
    Timing,
    choose_batch,
    device_name,
    measure_peak_memory,
    median,
    median_stderr,
    quantile,
    quantile_stderr,
    time_within,
)

# --------------------------------------------------------------------------- budgets

# Seconds of timed repeats per measurement: (throughput, latency). Unknown profiles use "quick".
BUDGET_SECONDS = {"smoke": (0.12, 0.05), "quick": (0.25, 0.1), "full": (5.0, 2.0)}
# The most those repeats may take when min_repeats (the profile's timing_repeats) forces more than the
# budget: (throughput, latency). It also sets the longest call a batch may take (limit / (repeats + 1)).
# quick keeps the limits of its earlier 0.8 s / 0.3 s budgets, so slow samplers get the same batch and
# repeats as before, while fast ones (2-D toys: calls of a few ms) stop after 0.25 s / 0.1 s.
LIMIT_SECONDS = {"smoke": (0.3, 0.125), "quick": (2.0, 0.75), "full": (12.5, 5.0)}
MAX_REPEATS = {"smoke": (25, 30), "quick": (50, 100), "full": (200, 500)}

# peak_memory is measured on one sampling call of this many samples (at most the profile's sample_batch).
MEMORY_BATCH = 256

# The GPU variant samples at this many times the profile's batch, up to GPU_MAX_BATCH.
GPU_BATCH_FACTOR = 16
GPU_MAX_BATCH = 16384

SAMPLING_SEED_OFFSET = 17  # generator offset for the speed metrics' own sampling calls

FLOP_COUNTER_NOTE = ("the FLOP formulas of torch.utils.flop_counter (matrix products, convolutions, attention), plus "
                     "matrix-vector products and triangular solves; elementwise operations are not counted")


def _budget_seconds(profile) -> tuple:
    """((throughput, latency) seconds, (throughput, latency) limits, (throughput, latency) most repeats)."""
    name = getattr(profile, "name", "quick")
    if name not in BUDGET_SECONDS:
        name = "quick"
    return BUDGET_SECONDS[name], LIMIT_SECONDS[name], MAX_REPEATS[name]


def throughput_budget(profile, scale: float = 1.0) -> Budget:
    (seconds, _), (limit, _), (max_repeats, _) = _budget_seconds(profile)
    return Budget(seconds * scale, min_repeats=max(int(profile.timing_repeats), 1), max_repeats=max_repeats,
                  max_seconds=limit * scale)


def latency_budget(profile) -> Budget:
    """Every call timed on its own; at least 5 repeats so the 95th percentile has some footing."""
    (_, seconds), (_, limit), (_, max_repeats) = _budget_seconds(profile)
    return Budget(seconds, min_repeats=max(int(profile.timing_repeats), 5), max_repeats=max_repeats,
                  min_block_seconds=0.0, max_seconds=limit)


# --------------------------------------------------------------------------- per-job cache


def _job_cache(ctx: MetricContext) -> dict:
    """A dict shared by the speed metrics of one job (keyed weakly by the fitted model object).

    Values never reference the model, so an entry disappears with its job's model."""
    table = ctx.run_cache.setdefault("speed_metrics", weakref.WeakKeyDictionary())
    try:
        return table.setdefault(ctx.model, {})
    except TypeError:  # a model that cannot be weakly referenced or hashed: no sharing
        return {}


def _cached(ctx: MetricContext, key: tuple, make: Callable[[], object]):
    cache = _job_cache(ctx)
    key = (getattr(ctx.profile, "name", ""), str(ctx.device), *key)
    if key not in cache:
        cache[key] = make()
    return cache[key]


# --------------------------------------------------------------------------- calls


def _is_conditional(ctx: MetricContext) -> bool:
    return Capability.CONDITIONAL in ctx.model_spec.capabilities and bool(ctx.dataset.spec.num_classes)


def sampling_call(ctx: MetricContext, max_batch: int) -> Callable[[int], Callable[[], object]]:
    """``call_for(b)``: a no-argument callable drawing b samples (labels drawn once, for conditional
    models), so the timed loop holds nothing but the call."""
    gen = ctx.generator(offset=SAMPLING_SEED_OFFSET)
    labels = None
    if _is_conditional(ctx):
        labels = torch.randint(ctx.dataset.spec.num_classes, (max_batch,), generator=gen).to(ctx.model.device)

    def call_for(b: int):
        if labels is None:
            return functools.partial(ctx.model.sample, b, gen)
        return functools.partial(ctx.model.sample, b, gen, labels=labels[:b])

    return call_for


def evaluation_call(ctx: MetricContext, max_batch: int) -> Callable[[int], Callable[[], object]]:
    """``call_for(b)``: a no-argument callable scoring ``ctx.evaluation_split(b)`` (with its labels for
    conditional models), so every batch scores examples the likelihood metrics score too. Each batch's
    data is moved to the model's device once, when ``call_for(b)`` is first asked for it, outside any
    timed region of :func:`time_within` (the batch ramp times its first call at a size with it)."""
    device = ctx.model.device
    labelled = _is_conditional(ctx) and ctx.dataset.test.y is not None
    batches: dict = {}

    def call_for(b: int):
        b = min(int(b), max_batch)
        if b not in batches:
            data = ctx.evaluation_split(b)
            batches[b] = (data.x.to(device), data.y.to(device) if labelled else None)
        x, y = batches[b]
        return functools.partial(ctx.model.log_likelihood, x, y)

    return call_for


def evaluation_target(ctx: MetricContext) -> int:
    return max(1, min(int(ctx.profile.sample_batch), len(ctx.dataset.test)))


# --------------------------------------------------------------------------- shared measurements


@dataclass
class Throughput:
    """Timed calls at ``choice.batch`` items per call."""

    choice: BatchChoice
    timing: Timing

    @property
    def rates(self) -> list:
        return self.timing.rates(self.choice.batch)


def _batch_choice(ctx: MetricContext, what: str, call_for, target: int, budget: Budget) -> BatchChoice:
    def make():
        with torch.no_grad():
            return choose_batch(lambda b: call_for(b)(), target, ctx.device, budget.max_call_seconds)

    return _cached(ctx, ("batch", what, target), make)


def _throughput(ctx: MetricContext, what: str, call_for, target: int, budget: Budget) -> Throughput:
    def make():
        choice = _batch_choice(ctx, what, call_for, target, budget)
        with torch.no_grad():
            timing = time_within(call_for(choice.batch), ctx.device, budget, warm_call_seconds=choice.call_seconds)
        return Throughput(choice, timing)

    return _cached(ctx, ("throughput", what, target), make)


def sampling_throughput(ctx: MetricContext) -> Throughput:
    target = int(ctx.profile.sample_batch)
    return _throughput(ctx, "sample", sampling_call(ctx, target), target, throughput_budget(ctx.profile))


def evaluation_throughput(ctx: MetricContext) -> Throughput:
    target = evaluation_target(ctx)
    return _throughput(ctx, "evaluate", evaluation_call(ctx, target), target, throughput_budget(ctx.profile))


def sampling_batch_choice(ctx: MetricContext) -> BatchChoice:
    target = int(ctx.profile.sample_batch)
    return _batch_choice(ctx, "sample", sampling_call(ctx, target), target, throughput_budget(ctx.profile))


def sampling_latency(ctx: MetricContext) -> Timing:
    """One-sample calls timed one at a time. The batch choice for sampling has already made (and
    timed) a warm one-sample call, so no further warm-up is needed."""

    def make():
        warm = dict(sampling_batch_choice(ctx).probes).get(1)
        with torch.no_grad():
            return time_within(sampling_call(ctx, 1)(1), ctx.device, latency_budget(ctx.profile),
                               warm_call_seconds=warm)

    return _cached(ctx, ("latency",), make)


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


def _mv_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


def _addmv_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]  # like torch's addmm formula, the added vector is not counted


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0]


def _solve_triangular_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """n^2 FLOPs per right-hand side of length n (substitution), for every batch element."""
    return int(a_shape[-1] * math.prod(out_shape))


def _extra_flop_formulas() -> dict:
    """Matrix-vector products and triangular solves, which torch's counter leaves out."""
    aten = torch.ops.aten
    return {aten.mv: _mv_flop, aten.addmv: _addmv_flop, aten.dot: _dot_flop, aten.vdot: _dot_flop,
            aten.linalg_solve_triangular: _solve_triangular_flop}


def _flop_formulas() -> dict:
    """torch's FLOP formulas (those FlopCounterMode uses) plus :func:`_extra_flop_formulas`, keyed by op."""
    from torch.utils.flop_counter import flop_registry, shape_wrapper

    return {**flop_registry, **{op: shape_wrapper(f) for op, f in _extra_flop_formulas().items()}}


class FlopCount(TorchDispatchMode):
    """Counts FLOPs with the formulas of ``torch.utils.flop_counter.FlopCounterMode``, without its
    per-module bookkeeping: the same totals (tests check this) at a fraction of its per-operation
    cost, which matters for samplers that run thousands of small operations (Gibbs sweeps,
    pixel-by-pixel decoding)."""

    def __init__(self):
        super().__init__()
        self.formulas = _flop_formulas()
        self.by_op: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            name = str(func._overloadpacket)
            self.by_op[name] = self.by_op.get(name, 0) + int(formula(*args, **kwargs, out_val=out))
        return out

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


def count_flops(fn: Callable[[], object]) -> tuple:
    """(total FLOPs, {op name: FLOPs}) of one call of ``fn``: torch's FLOP formulas (matrix products,
    convolutions, attention) plus matrix-vector products and triangular solves."""
    counter = FlopCount()
    with counter:
        fn()
    return counter.total, dict(counter.by_op)


def _instrumented(ctx: MetricContext, what: str, call_for, target: int, with_memory: bool = False) -> Instrumented:
    """FLOPs of one call at the batch the throughput measurement uses, and (``with_memory``) the peak
    memory of one call at the fixed batch ``min(target, MEMORY_BATCH)`` (one of each per job). The
    throughput batch depends on how fast calls ran (a loaded machine picks a smaller one), so memory is
    measured at a batch that does not: the figure is the same on every run of the same model. Each call
    is prepared (``call_for(batch)``) before the memory measurement starts, so only what the model's
    method allocates is counted."""

    def make():
        batch = _batch_choice(ctx, what, call_for, target, throughput_budget(ctx.profile)).batch
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

    return _cached(ctx, ("instrumented", what, target), make)


def sampling_instrumented(ctx: MetricContext) -> Instrumented:
    target = int(ctx.profile.sample_batch)
    return _instrumented(ctx, "sample", sampling_call(ctx, target), target, with_memory=True)


def evaluation_instrumented(ctx: MetricContext) -> Instrumented:
    target = evaluation_target(ctx)
    return _instrumented(ctx, "evaluate", evaluation_call(ctx, target), target)


# --------------------------------------------------------------------------- measurement helpers


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


def rate_measurement(metric: str, unit: str, result: Throughput, ctx: MetricContext, budget: Budget,
                     **extra) -> Measurement:
    rates = result.rates
    return Measurement(
        metric, median(rates), unit, stderr=median_stderr(rates), n=len(rates),
        details={**batch_details(result.choice, budget), **spread_details(rates, unit), **timing_details(result.timing),
                 **device_details(ctx.device), **extra},
    )


# --------------------------------------------------------------------------- peak FLOP/s


@dataclass(frozen=True)
class PeakFlops:
    """Dense peak FLOP/s of a GPU by number format (vendor datasheet figures, without sparsity)."""

    pattern: str  # regular expression matched against torch.cuda.get_device_name
    label: str
    flops: dict  # "fp64" | "fp32" | "tf32" | "bf16" | "fp16" -> FLOP/s


T = 1e12
PEAK_FLOPS = (  # first match wins: the specific variants come before the generic name
    PeakFlops(r"H200.*NVL", "H200 NVL", {"fp64": 30 * T, "fp32": 60 * T, "tf32": 417.5 * T, "bf16": 835.5 * T,
                                          "fp16": 835.5 * T}),
    PeakFlops(r"H200", "H200 SXM", {"fp64": 34 * T, "fp32": 67 * T, "tf32": 494.5 * T, "bf16": 989.5 * T,
                                     "fp16": 989.5 * T}),
    PeakFlops(r"H100.*NVL", "H100 NVL", {"fp64": 30 * T, "fp32": 60 * T, "tf32": 417.5 * T, "bf16": 835.5 * T,
                                          "fp16": 835.5 * T}),
    PeakFlops(r"H100.*PCIe", "H100 PCIe", {"fp64": 26 * T, "fp32": 51 * T, "tf32": 378 * T, "bf16": 756 * T,
                                            "fp16": 756 * T}),
    PeakFlops(r"H100", "H100 SXM", {"fp64": 34 * T, "fp32": 67 * T, "tf32": 494.5 * T, "bf16": 989.5 * T,
                                     "fp16": 989.5 * T}),
    PeakFlops(r"A100", "A100", {"fp64": 9.7 * T, "fp32": 19.5 * T, "tf32": 156 * T, "bf16": 312 * T, "fp16": 312 * T}),
    PeakFlops(r"L40S", "L40S", {"fp32": 91.6 * T, "tf32": 183 * T, "bf16": 362 * T, "fp16": 362 * T}),
    PeakFlops(r"\bL4\b", "L4", {"fp32": 30.3 * T, "tf32": 60 * T, "bf16": 121 * T, "fp16": 121 * T}),
    PeakFlops(r"V100.*SXM", "V100 SXM2", {"fp64": 7.8 * T, "fp32": 15.7 * T, "fp16": 125 * T}),
    PeakFlops(r"V100", "V100 PCIe", {"fp64": 7 * T, "fp32": 14 * T, "fp16": 112 * T}),
    PeakFlops(r"\bT4\b", "T4", {"fp32": 8.1 * T, "fp16": 65 * T}),
)


def model_dtype(model) -> torch.dtype:
    """The floating-point type most of the model's parameters (or tensor attributes) hold."""
    counts: dict = {}
    modules = model.modules() if hasattr(model, "modules") else []
    tensors = [p for m in modules for p in m.parameters()]
    tensors += [v for v in vars(model).values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        if t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    return max(counts, key=counts.get) if counts else torch.get_default_dtype()


def number_format(dtype: torch.dtype) -> str:
    if dtype == torch.float64:
        return "fp64"
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def device_peak_flops(device, dtype: torch.dtype, name: Optional[str] = None) -> tuple:
    """(peak FLOP/s or None, details saying where it came from or why it is unknown)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None, {"peak_unknown": "the harness knows no peak FLOP/s for a CPU (it depends on the core count, "
                                      "SIMD width and clock), so the fraction of peak is left out"}
    name = name if name is not None else device_name(device)
    fmt = number_format(dtype)
    for entry in PEAK_FLOPS:
        if re.search(entry.pattern, name, flags=re.IGNORECASE):
            if fmt in entry.flops:
                return entry.flops[fmt], {"peak_flops": entry.flops[fmt], "peak_format": fmt, "peak_gpu": entry.label,
                                          "peak_source": "vendor datasheet, dense (no sparsity)"}
            return None, {"peak_unknown": f"no {fmt} peak listed for {entry.label}"}
    return None, {"peak_unknown": f"{name!r} is not in the harness's table of GPU peak FLOP/s"}


# --------------------------------------------------------------------------- metrics


def compute_sample_throughput(ctx: MetricContext) -> list:
    result = sampling_throughput(ctx)
    return [rate_measurement("sample_throughput", "samples/s", result, ctx, throughput_budget(ctx.profile),
                             conditional=_is_conditional(ctx))]


def compute_sample_latency(ctx: MetricContext) -> list:
    timing = sampling_latency(ctx)
    ms = [s * 1e3 for s in timing.per_call]
    details = {"batch_size": 1, **spread_details(ms, "ms"), **timing_details(timing), **device_details(ctx.device)}
    return [
        Measurement("sample_latency_p50", median(ms), stderr=quantile_stderr(ms, 0.5), n=len(ms), details=details),
        Measurement("sample_latency_p95", quantile(ms, 0.95), stderr=quantile_stderr(ms, 0.95), n=len(ms),
                    details=details),
    ]


def compute_eval_throughput(ctx: MetricContext) -> list:
    result = evaluation_throughput(ctx)
    return [rate_measurement("eval_throughput", "examples/s", result, ctx, throughput_budget(ctx.profile),
                             split="test", evaluation_examples="ctx.evaluation_split(batch_size)",
                             conditional=_is_conditional(ctx))]


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
            result = _throughput(ctx, "sample", sampling_call(ctx, target), target, budget)
            break
        except out_of_memory:
            if target <= 1 or halvings >= 6:
                raise
            torch.cuda.empty_cache()
            target, halvings = target // 2, halvings + 1
    extra = {"conditional": _is_conditional(ctx)}
    if halvings:
        extra["oom_note"] = f"the batch was halved {halvings} time(s) after running out of GPU memory"
    return [rate_measurement("gpu_sample_throughput", "samples/s", result, ctx, budget, **extra)]


# --------------------------------------------------------------------------- registration


# The declarations. Every speed output is measured, and judged by the regression gate as a ratio
# (SPEED_TOLERANCE): CI machines are shared and noisy, so only half the throughput, or twice the
# time, memory or FLOPs, counts as worse. Speed columns come after the quality ones (order >= 200).


def _speed(name: str, unit: str, higher_is_better: bool, scaling: Scaling, order: int, description: str,
           **kw) -> Output:
    return Output(name, unit, higher_is_better=higher_is_better, kind=SPEED, scaling=scaling, estimator="measured",
                  tolerance=SPEED_TOLERANCE, order=order, description=description, **kw)


OUTPUTS = {o.name: o for o in (
    _speed("sample_throughput", "samples/s", True, Scaling.RATE, 200, "samples per second at the profile's sample batch",
           headline=True),
    _speed("sample_latency_p50", "ms", False, Scaling.DURATION, 210, "median time to draw one sample"),
    _speed("sample_latency_p95", "ms", False, Scaling.DURATION, 220, "95th percentile of the time to draw one sample"),
    _speed("eval_throughput", "examples/s", True, Scaling.RATE, 230, "log-likelihood evaluations per second"),
    _speed("train_throughput", "examples/s", True, Scaling.RATE, 240, "training examples per second over the whole fit"),
    _speed("peak_memory", "bytes", False, Scaling.NONE, 250, "peak memory allocated during one sampling call"),
    _speed("flops_per_sample", "FLOP/sample", False, Scaling.NONE, 260, "FLOPs of a sampling call per sample"),
    _speed("flops_per_evaluation", "FLOP/example", False, Scaling.NONE, 270, "FLOPs of a log-likelihood call per example"),
    _speed("achieved_flops", "FLOP/s", True, Scaling.RATE, 280, "flops_per_sample x sample_throughput"),
    _speed("achieved_flops_fraction", "fraction of peak", True, Scaling.NONE, 290, "achieved_flops / the GPU's datasheet peak"),
    _speed("gpu_sample_throughput", "samples/s", True, Scaling.RATE, 300, "samples per second on a CUDA device at 16x the batch"),
)}


def _outputs(*names: str) -> list:
    return [OUTPUTS[name] for name in names]


def metric_specs() -> list:
    """Fresh MetricSpecs of every speed metric."""
    sample, likelihood = [Capability.SAMPLE], [Capability.LOG_LIKELIHOOD]
    return [
        MetricSpec(
            "sample_throughput", compute_sample_throughput, _outputs("sample_throughput"), requires=sample,
            description="Samples per second at the profile's sample batch: median of timed repeats after a "
                        "warm-up, with percentiles and the standard error of the median."),
        MetricSpec(
            "sample_latency", compute_sample_latency, _outputs("sample_latency_p50", "sample_latency_p95"),
            requires=sample,
            description="Milliseconds to draw one sample: the median (sample_latency_p50) and the 95th "
                        "percentile (sample_latency_p95) of calls timed one at a time after a warm-up."),
        MetricSpec(
            "eval_throughput", compute_eval_throughput, _outputs("eval_throughput"), requires=likelihood,
            description="Log-likelihood evaluations per second on a batch of the evaluation examples of the test "
                        "split (median of repeats)."),
        MetricSpec(
            "train_throughput", compute_train_throughput, _outputs("train_throughput"),
            description="Training examples per second over the whole fit (examples reported through ctx.step "
                        "divided by the fit's wall time)."),
        MetricSpec(
            "peak_memory", compute_peak_memory, _outputs("peak_memory"), requires=sample,
            description="Peak of the memory a sampling call of min(sample_batch, 256) samples allocates (above what "
                        "was allocated before it): the "
                        "CUDA allocator's statistics on a GPU, torch's profiler memory events on a CPU."),
        MetricSpec(
            "flops_per_sample", compute_flops_per_sample, _outputs("flops_per_sample"), requires=sample,
            description="FLOPs of a sampling call divided by its batch size (torch's FLOP formulas: matrix "
                        "products, convolutions, attention; plus matrix-vector products and triangular solves)."),
        MetricSpec(
            "flops_per_evaluation", compute_flops_per_evaluation, _outputs("flops_per_evaluation"),
            requires=likelihood,
            description="FLOPs of a log-likelihood evaluation per test example, counted like flops_per_sample."),
        MetricSpec(
            "achieved_flops", compute_achieved_flops, _outputs("achieved_flops", "achieved_flops_fraction"),
            requires=sample,
            description="flops_per_sample x sample_throughput, with its fraction of the GPU's peak "
                        "(achieved_flops_fraction) where the peak is known."),
        MetricSpec(
            "gpu_sample_throughput", compute_gpu_sample_throughput, _outputs("gpu_sample_throughput"),
            requires=sample, applies=cuda_unavailable,
            description=f"Samples per second on a CUDA device at {GPU_BATCH_FACTOR}x the profile's sample batch "
                        f"(at most {GPU_MAX_BATCH}); skipped when no CUDA device is available."),
    ]


@hookimpl
def harness_register_metrics(register):
    for spec in metric_specs():
        register(spec)
