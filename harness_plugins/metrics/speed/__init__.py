"""Speed metrics: their declarations and registration.

They say how fast a fitted model samples, evaluates and trained, how much memory a sampling call
allocates and how many FLOPs it does.

Every timing follows the core's recipe (:mod:`harness.timing`): a warm-up, then timed repeats inside
a time budget the metrics declare per profile (:mod:`.budgets`); a repeat is a block of several calls
when calls are shorter than a couple of milliseconds, so nothing but the calls and the device
synchronisation is timed. The value is the median over repeats, with its Maritz-Jarrett standard
error and the 5th/25th/75th/95th percentiles in details. CUDA work is timed with CUDA events.

The modules: :mod:`.budgets` (sizes per profile), :mod:`.calls` (the timed calls and the per-job
cache), :mod:`.batching` (the batch a measurement times), :mod:`.throughput` (throughput and latency
metrics), :mod:`.instrumented` (memory and FLOP metrics), :mod:`.memory` (peak memory of a call),
:mod:`.flops` (the FLOP counter), :mod:`.datasheet` (GPU peak FLOP/s) and :mod:`.details`.

Metrics: sample_throughput, sample_latency (sample_latency_p50 and sample_latency_p95),
eval_throughput, train_throughput, peak_memory, flops_per_sample, flops_per_evaluation,
achieved_flops (and achieved_flops_fraction where the device's peak is known) and the GPU variant
gpu_sample_throughput (skipped with its reason when no CUDA device is available).
"""

from __future__ import annotations

from harness import Capability, MetricSpec, Output, Scaling, hookimpl
from harness.contracts import SPEED, SPEED_TOLERANCE
from harness_plugins.metrics.speed.budgets import SIZES
from harness_plugins.metrics.speed.instrumented import (
    compute_achieved_flops,
    compute_flops_per_evaluation,
    compute_flops_per_sample,
    compute_peak_memory,
)
from harness_plugins.metrics.speed.throughput import (
    GPU_BATCH_FACTOR,
    GPU_MAX_BATCH,
    compute_eval_throughput,
    compute_gpu_sample_throughput,
    compute_sample_latency,
    compute_sample_throughput,
    compute_train_throughput,
    cuda_unavailable,
)

# Every speed output is measured, and judged by the regression gate as a ratio (SPEED_TOLERANCE): CI
# machines are shared and noisy, so only half the throughput, or twice the time, memory or FLOPs,
# counts as worse. Speed columns come after the quality ones (order >= 200). Every metric but
# train_throughput (the fit's own figures) declares the budgets of .budgets as its sizes.


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
            sizes=SIZES,
            description="Samples per second at the profile's sample batch: median of timed repeats after a "
                        "warm-up, with percentiles and the standard error of the median."),
        MetricSpec(
            "sample_latency", compute_sample_latency, _outputs("sample_latency_p50", "sample_latency_p95"),
            requires=sample, sizes=SIZES,
            description="Milliseconds to draw one sample: the median (sample_latency_p50) and the 95th "
                        "percentile (sample_latency_p95) of calls timed one at a time after a warm-up."),
        MetricSpec(
            "eval_throughput", compute_eval_throughput, _outputs("eval_throughput"), requires=likelihood,
            sizes=SIZES,
            description="Log-likelihood evaluations per second on a batch of the evaluation examples of the test "
                        "split (median of repeats)."),
        MetricSpec(
            "train_throughput", compute_train_throughput, _outputs("train_throughput"),
            description="Training examples per second over the whole fit (examples reported through ctx.step "
                        "divided by the fit's wall time)."),
        MetricSpec(
            "peak_memory", compute_peak_memory, _outputs("peak_memory"), requires=sample, sizes=SIZES,
            description="Peak of the memory a sampling call of min(sample_batch, 256) samples allocates (above what "
                        "was allocated before it): the "
                        "CUDA allocator's statistics on a GPU, torch's profiler memory events on a CPU."),
        MetricSpec(
            "flops_per_sample", compute_flops_per_sample, _outputs("flops_per_sample"), requires=sample,
            sizes=SIZES,
            description="FLOPs of a sampling call divided by its batch size (torch's FLOP formulas: matrix "
                        "products, convolutions, attention; plus matrix-vector products and triangular solves)."),
        MetricSpec(
            "flops_per_evaluation", compute_flops_per_evaluation, _outputs("flops_per_evaluation"),
            requires=likelihood, sizes=SIZES,
            description="FLOPs of a log-likelihood evaluation per test example, counted like flops_per_sample."),
        MetricSpec(
            "achieved_flops", compute_achieved_flops, _outputs("achieved_flops", "achieved_flops_fraction"),
            requires=sample, sizes=SIZES,
            description="flops_per_sample x sample_throughput, with its fraction of the GPU's peak "
                        "(achieved_flops_fraction) where the peak is known."),
        MetricSpec(
            "gpu_sample_throughput", compute_gpu_sample_throughput, _outputs("gpu_sample_throughput"),
            requires=sample, applies=cuda_unavailable, sizes=SIZES,
            description=f"Samples per second on a CUDA device at {GPU_BATCH_FACTOR}x the profile's sample batch "
                        f"(at most {GPU_MAX_BATCH}); skipped when no CUDA device is available."),
    ]


@hookimpl
def harness_register_metrics(register):
    for spec in metric_specs():
        register(spec)
