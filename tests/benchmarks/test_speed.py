"""pytest-benchmark suite: sampling and likelihood evaluation of every installed model at fixed sizes,
the cost of the whole speed-metric set per job, and the harness's overhead against a bare loop.

Run with ``tox -e bench`` or ``pytest tests/benchmarks --benchmark-only`` (add
``--benchmark-autosave`` to keep the results and ``--benchmark-compare`` to set them against the
last saved run). Each benchmark's ``extra_info`` carries the model, dataset, batch and items/s.
"""

from __future__ import annotations

import functools
import statistics
import time

import pytest
import torch

from tests.benchmarks.conftest import EVAL_BATCH, SAMPLE_BATCH

SLOW_CALL_SECONDS = 0.2  # calls longer than this get a fixed 3 rounds instead of pytest-benchmark's calibration


def _run(benchmark, fn, items: int, info: dict):
    """Benchmark ``fn`` (one warm-up call first) and record items per second in extra_info."""
    start = time.perf_counter()
    with torch.no_grad():
        fn()
        warm = time.perf_counter() - start
        if warm > SLOW_CALL_SECONDS:
            benchmark.pedantic(fn, rounds=3, iterations=1)
        else:
            benchmark(fn)
    benchmark.extra_info.update(info)
    benchmark.extra_info["items_per_call"] = items
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["items_per_second_at_median"] = items / stats.stats.median


def test_sample(benchmark, fitted_models, model_name):
    fitted = fitted_models(model_name)
    if "sample" not in {c.value for c in fitted.spec.capabilities}:
        pytest.skip(f"{model_name} does not sample")
    benchmark.group = "sample"
    _run(benchmark, fitted.sample_call(SAMPLE_BATCH), SAMPLE_BATCH, {**fitted.info(), "batch_size": SAMPLE_BATCH})


def test_log_likelihood(benchmark, fitted_models, model_name):
    fitted = fitted_models(model_name)
    if not fitted.has_likelihood:
        pytest.skip(f"{model_name} gives no likelihood")
    n = min(EVAL_BATCH, len(fitted.dataset.test))
    benchmark.group = "log_likelihood"
    _run(benchmark, fitted.eval_call(n), n, {**fitted.info(), "batch_size": n})


# --------------------------------------------------------------------------- the speed metrics themselves


def _metric_context(fitted, profile="smoke"):
    from harness.contracts import MetricContext
    from harness.profiles import get_profile

    return MetricContext(model=fitted.model, model_spec=fitted.spec, dataset=fitted.dataset,
                         profile=get_profile(profile), device=torch.device("cpu"), seed=0, fit=fitted.fit,
                         run_cache={})


def test_speed_metric_set_per_job(benchmark, bench_host, fitted_models, model_name):
    """Every applicable speed metric of one job at the smoke profile, from a cold per-job cache."""
    from harness_plugins.metrics.speed import metric_specs

    fitted = fitted_models(model_name)
    specs = [s for s in metric_specs() if s.incompatibility(fitted.spec, fitted.dataset.spec) is None]

    def all_speed_metrics():
        ctx = _metric_context(fitted)
        return [m for spec in specs for m in spec.compute(ctx)]

    benchmark.group = "speed metrics per job (smoke)"
    rows = benchmark.pedantic(all_speed_metrics, rounds=2, iterations=1)
    benchmark.extra_info.update({**fitted.info(), "metrics": [s.name for s in specs]})
    assert all(m.finite for m in rows)


# --------------------------------------------------------------------------- overhead against a bare loop

OVERHEAD_MODELS = ["gaussian", "made", "realnvp"]  # a closed-form sampler (cheapest call) and two networks
OVERHEAD_ROUNDS = 15


def _loop_overhead_per_call(calls: int = 20000, tries: int = 7) -> float:
    """Seconds per call the harness's timed loop adds to a bare loop, from an empty function: the
    harness calls a functools.partial inside ``time_blocks``; a bare loop calls the function directly.
    The fastest of several tries, so preemption on a busy machine does not inflate it."""
    from harness.timing import WallStopwatch, time_blocks

    gen = torch.Generator()

    def noop(n, generator, labels=None):
        return None

    bound = functools.partial(noop, 256, gen)  # what the harness times for an unconditional model
    harness = min(time_blocks(bound, calls, 1, WallStopwatch())[0] for _ in range(tries)) / calls
    bare = []
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(calls):
            noop(256, gen)
        bare.append(time.perf_counter() - start)
    return max(harness - min(bare) / calls, 0.0)


def _bare_rate(model, batch: int, calls: int) -> float:
    """The hand-written loop: ``calls`` sampling calls in a row, timed as a whole."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(calls):
            model.sample(batch, gen)
        seconds = time.perf_counter() - start
    return calls * batch / seconds


@pytest.mark.parametrize("overhead_model", OVERHEAD_MODELS)
def test_harness_overhead_ratio(benchmark, bench_host, fitted_models, overhead_model, capsys):
    """sample_throughput as the harness measures it (smoke profile) against a bare loop making as
    many calls at the same batch, alternating which goes first; the ratio is reported, not asserted
    beyond a sanity floor. ratio_median compares the harness's reported value (median over blocks);
    ratio_mean compares its total calls over total timed seconds, the same estimator as the bare loop."""
    from harness_plugins.metrics.speed.throughput import compute_sample_throughput

    if overhead_model not in bench_host.registry.models:
        pytest.skip(f"{overhead_model} is not installed")
    fitted = fitted_models(overhead_model)
    if fitted.conditional:
        pytest.skip("the bare loop passes no labels")
    ratios_median, ratios_mean, rounds = [], [], []

    def harness():
        (m,) = compute_sample_throughput(_metric_context(fitted, "smoke"))
        d = m.details
        calls = d["calls_per_repeat"] * d["repeats"]
        return m, d["batch_size"], calls, calls * d["batch_size"] / d["timed_seconds"]

    def one_round():
        if len(rounds) % 2 == 1:  # bare loop first, sized like the previous round's harness measurement
            batch, calls = rounds[-1]["batch"], rounds[-1]["calls"]
            bare = _bare_rate(fitted.model, batch, calls)
            m, batch_now, _, mean_rate = harness()
            if batch_now != batch:
                return  # the harness chose another batch this time: not comparable
        else:
            m, batch, calls, mean_rate = harness()
            bare = _bare_rate(fitted.model, batch, calls)
        ratios_median.append(m.value / bare)
        ratios_mean.append(mean_rate / bare)
        rounds.append({"harness_median": m.value, "harness_mean": mean_rate, "bare": bare, "batch": batch,
                       "calls": calls})

    benchmark.group = "harness overhead"
    benchmark.pedantic(one_round, rounds=OVERHEAD_ROUNDS, iterations=1)
    per_call = statistics.median(r["batch"] / r["harness_median"] for r in rounds)
    loop_overhead = _loop_overhead_per_call()
    summary = {"model": overhead_model, "dataset": fitted.dataset.name, "rounds": rounds,
               "ratio_median": statistics.median(ratios_median), "ratio_mean": statistics.median(ratios_mean),
               "ratio_median_min": min(ratios_median), "ratio_mean_min": min(ratios_mean),
               "seconds_per_call": per_call, "loop_overhead_seconds_per_call": loop_overhead,
               "ratio_from_loop_overhead": per_call / (per_call + loop_overhead)}
    benchmark.extra_info.update(summary)
    with capsys.disabled():
        print(f"\n[overhead] {overhead_model}/{fitted.dataset.name} batch {rounds[-1]['batch']}: harness/bare "
              f"throughput ratio, median over {OVERHEAD_ROUNDS} rounds: {summary['ratio_median']:.3f} "
              f"(harness median over blocks), {summary['ratio_mean']:.3f} (harness mean); "
              f"per round {[round(r, 3) for r in ratios_mean]}; timed-loop overhead "
              f"{loop_overhead * 1e9:.0f} ns per {per_call * 1e6:.1f} us call -> "
              f"{summary['ratio_from_loop_overhead']:.4f}")
    assert summary["ratio_mean"] > 0.5  # a sanity floor, not a timing threshold
