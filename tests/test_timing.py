"""The timing recipe (harness.timing), the speed metrics' batch choice and peak memory: statistics
against numpy, repeat planning, and the CUDA branches (synchronise, events, peak-memory reset) driven
on CPU with torch.cuda's functions replaced by a stand-in. No assertion depends on how fast anything
runs."""

import math
import time

import numpy as np
import pytest
import torch

from harness import timing
from harness.timing import Budget, median, median_stderr, quantile, quantile_stderr, time_within
from harness_plugins.metrics.speed import details, memory
from harness_plugins.metrics.speed.batching import choose_batch

ARRAYS = [
    [3.0],
    [2.0, 1.0],
    [0.5, 0.1, 0.3, 0.9, 0.2],
    [1.2, 0.7, 5.0, 0.9, 1.1, 1.0, 0.95, 1.3],
    list(np.random.default_rng(3).lognormal(size=37)),
]


class FakeCuda:
    """Stands in for ``torch.cuda``: records every call; events read a clock (perf_counter unless
    another clock is given); memory figures are fixed numbers."""

    def __init__(self, clock=time.perf_counter, allocated=1000, peak=5000):
        self.calls = []
        self.clock = clock
        self.allocated, self.peak = allocated, peak
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.t = None

            def record(self, stream=None):
                fake.calls.append("event.record")
                self.t = fake.clock()

            def synchronize(self):
                fake.calls.append("event.synchronize")

            def elapsed_time(self, end):
                return (end.t - self.t) * 1e3

        self.Event = Event

    def synchronize(self, device=None):
        self.calls.append("synchronize")

    def current_stream(self, device=None):
        return "stream"

    def memory_allocated(self, device=None):
        self.calls.append("memory_allocated")
        return self.allocated

    def reset_peak_memory_stats(self, device=None):
        self.calls.append("reset_peak_memory_stats")

    def max_memory_allocated(self, device=None):
        self.calls.append("max_memory_allocated")
        return self.peak

    def get_device_name(self, device=None):
        return "NVIDIA H100 80GB HBM3"


# The torch.cuda functions the timing, memory and device-name code calls.
CUDA_FUNCTIONS = ("synchronize", "current_stream", "Event", "memory_allocated", "reset_peak_memory_stats",
                  "max_memory_allocated", "get_device_name")


def install_fake_cuda(monkeypatch, fake: FakeCuda) -> FakeCuda:
    """torch.cuda's functions replaced by ``fake``'s for the test (the code under test calls them
    through ``torch.cuda`` when it runs)."""
    for name in CUDA_FUNCTIONS:
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    return fake


class VirtualClock:
    """A clock that only moves when a fake call says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def virtual_cuda(monkeypatch) -> FakeCuda:
    """A stand-in for torch.cuda whose events read a virtual clock (``.clock``)."""
    return install_fake_cuda(monkeypatch, FakeCuda(VirtualClock()))


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("values", ARRAYS)
def test_median_and_quantiles_match_numpy(values):
    assert median(values) == pytest.approx(float(np.median(values)), rel=1e-12, abs=0)
    for q in (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)), rel=1e-12, abs=0)


def _maritz_jarrett_numpy(values, q):
    """Reference: the Beta(m, n-m+1) weights integrated numerically with numpy, no scipy."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    m = min(max(math.floor(q * n + 0.5), 1), n)
    u = np.linspace(0.0, 1.0, 400_001)
    density = u ** (m - 1) * (1 - u) ** (n - m) / (math.factorial(m - 1) * math.factorial(n - m) / math.factorial(n))
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(u))])
    w = np.diff(np.interp(np.arange(n + 1) / n, u, cdf))
    c1, c2 = (w * x).sum(), (w * x * x).sum()
    return math.sqrt(c2 - c1 * c1)


@pytest.mark.parametrize("values", ARRAYS[1:])
@pytest.mark.parametrize("q", [0.5, 0.95])
def test_quantile_stderr_matches_a_numpy_reference(values, q):
    assert quantile_stderr(values, q) == pytest.approx(_maritz_jarrett_numpy(values, q), rel=1e-6)


def test_stderr_of_a_single_value_is_none():
    assert quantile_stderr([1.0], 0.5) is None and median_stderr([2.0]) is None


def test_median_stderr_agrees_with_the_spread_of_medians():
    """Normal samples of 41: the mean Maritz-Jarrett estimate is within 10% of the empirical standard
    deviation of 400 sample medians (the sd of that sd is about 3.5%, so 10% is about 3 sigma)."""
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((400, 41))
    estimates = [median_stderr(s) for s in samples]
    empirical = np.std(np.median(samples, axis=1), ddof=1)
    assert np.mean(estimates) == pytest.approx(empirical, rel=0.10)


def test_timing_rates_per_call_and_median():
    t = timing.Timing(seconds=[0.2, 0.4, 0.5], calls_per_repeat=2)
    assert t.per_call == [0.1, 0.2, 0.25]
    assert t.rates(10) == pytest.approx([100.0, 50.0, 40.0])
    assert t.median == pytest.approx(0.2)


# --------------------------------------------------------------------------- repeat planning


def test_short_calls_are_timed_in_blocks():
    budget = Budget(0.1, min_repeats=3, max_repeats=25, min_block_seconds=2e-3)
    assert timing.plan_repeats(1e-4, budget) == (40, 25)  # 25 blocks of 40 calls fill the 0.1 s
    assert timing.plan_repeats(1e-3, budget) == (4, 25)  # 2 ms needs 2 calls; filling 0.1 s needs 4
    assert timing.plan_repeats(0.01, budget) == (1, 10)  # 0.1 s of 10 ms calls


def test_min_repeats_yield_to_the_limit_for_slow_calls():
    budget = Budget(0.1, min_repeats=3, max_repeats=25)  # limit 0.25 s
    assert timing.plan_repeats(0.05, budget) == (1, 3)  # min_repeats honoured: 0.15 s <= 0.25 s
    assert timing.plan_repeats(0.2, budget) == (1, 1)  # three would take 0.6 s
    assert budget.max_call_seconds == pytest.approx(0.25 / 4)


def test_latency_budget_times_every_call_alone():
    assert timing.plan_repeats(1e-6, Budget(1e-4, min_repeats=5, max_repeats=30, min_block_seconds=0)) == (1, 30)


def test_time_within_counts_its_calls():
    """Every call is accounted for: warm-up and calibration calls, then calls x repeats timed."""
    calls = []
    t = time_within(lambda: calls.append(1), "cpu", Budget(0.01, min_repeats=3, max_repeats=5))
    assert 1 <= t.repeats <= 5 and t.calls_per_repeat >= 1 and t.clock == "perf_counter"
    assert len(calls) == t.warmup_calls + t.calls_per_repeat * t.repeats
    assert all(s >= 0 for s in t.seconds)


def test_time_within_skips_the_warmup_when_told_the_call_is_warm():
    calls = []
    t = time_within(lambda: calls.append(1), "cpu", Budget(0.01, min_repeats=2, max_repeats=2, min_block_seconds=0),
                    warm_call_seconds=0.001)
    assert t.warmup_calls == 0 and len(calls) == 2


def test_calls_that_slow_down_after_planning_stop_at_the_budget_limit(virtual_cuda):
    """Planned on a 1 ms call, the calls then take 50 ms (a machine that became busy): the blocks stop
    once they have taken the budget's limit, instead of running every planned block."""
    clock = virtual_cuda.clock
    durations = iter([1e-3] * 3 + [50e-3] * 10_000)

    def call():
        clock.advance(next(durations))

    budget = Budget(0.1, min_repeats=3, max_repeats=25, min_block_seconds=2e-3)
    t = time_within(call, "cuda", budget)
    planned_calls, planned_repeats = timing.plan_repeats(1e-3, budget)
    assert t.calls_per_repeat == planned_calls and t.repeats < planned_repeats
    block = planned_calls * 50e-3
    assert budget.limit <= sum(t.seconds) < budget.limit + block


def test_steady_calls_stop_at_the_min_repeats_once_the_median_is_precise(virtual_cuda):
    """Calls of a constant 1 ms: the median's standard error is 0 after min_repeats blocks, so a budget
    with a precision stops there; without one the blocks fill the budget."""
    clock = virtual_cuda.clock

    def call():
        clock.advance(1e-3)

    loose = Budget(0.1, min_repeats=4, max_repeats=25, min_block_seconds=2e-3)
    precise = Budget(0.1, min_repeats=4, max_repeats=25, min_block_seconds=2e-3, precision=0.01)
    assert time_within(call, "cuda", loose).repeats == timing.plan_repeats(1e-3, loose)[1] == 25
    assert time_within(call, "cuda", precise).repeats == 4


def test_noisy_calls_go_on_until_the_median_is_precise_or_the_budget_is_spent(virtual_cuda):
    """A median known to the precision ends the repeats (checked where the stop rule looks: the count
    grown by a quarter), never sooner; calls too noisy for it fill the budget."""
    clock = virtual_cuda.clock

    def timed(sigma, precision):
        rng = np.random.default_rng(0)

        def call():
            clock.advance(1e-3 * float(rng.lognormal(0.0, sigma)))

        budget = Budget(0.1, min_repeats=5, max_repeats=200, min_block_seconds=0, precision=precision)
        return time_within(call, "cuda", budget)

    t, full = timed(0.05, 0.01), timed(0.05, None)
    assert 5 <= t.repeats < full.repeats and t.seconds == pytest.approx(full.seconds[:t.repeats])
    assert median_stderr(t.per_call) <= 0.01 * median(t.per_call)
    earlier = t.per_call[:math.ceil(t.repeats / 1.25) - 1]  # the last count the rule looked at before
    assert median_stderr(earlier) > 0.01 * median(earlier)
    assert timed(1.0, 0.001).repeats == timed(1.0, None).repeats  # far too noisy for 0.1 %: the budget decides


# --------------------------------------------------------------------------- batch choice (virtual clock)


def _choose(clock, overhead, per_item, target=256, max_call_seconds=0.1, extra=None):
    made = []

    def call_at(b):
        made.append(b)
        clock.advance(overhead + per_item * b + (extra(len(made), b) if extra else 0.0))

    return choose_batch(call_at, target, "cuda", max_call_seconds=max_call_seconds), made


def test_choose_batch_keeps_the_target_when_calls_are_short(virtual_cuda):
    choice, made = _choose(virtual_cuda.clock, 0.001, 1e-5)
    assert choice.batch == 256 and not choice.reduced
    assert made == [1, 1, 1, 1, 4, 4, 4, 256, 256, 256]  # cheap calls: the fastest of three is kept
    assert choice.probes == [(1, pytest.approx(0.00101)), (4, pytest.approx(0.00104)), (256, pytest.approx(0.00356))]
    assert choice.call_seconds == pytest.approx(0.00356) and choice.calls == len(made)


def test_choose_batch_keeps_the_fastest_probe(virtual_cuda):
    """One preempted probe (10 ms extra on the fifth call) must not shrink the batch."""
    choice, made = _choose(virtual_cuda.clock, 0.001, 1e-5, extra=lambda i, b: 0.01 if i == 5 else 0.0)
    assert choice.batch == 256 and choice.probes[1] == (4, pytest.approx(0.00104))


def test_choose_batch_shrinks_to_the_largest_power_of_two_that_fits(virtual_cuda):
    """t(b) = 0.01 + 0.001 b: measured up to 64 (0.074 s); 90 items would fit in 0.1 s -> 64."""
    choice, made = _choose(virtual_cuda.clock, 0.01, 0.001)
    assert choice.batch == 64 and choice.reduced and choice.call_seconds == pytest.approx(0.074)
    assert [b for b, _ in choice.probes] == [1, 4, 16, 64]


def test_choose_batch_allows_four_one_item_calls_when_one_is_already_long(virtual_cuda):
    """t(b) = 0.3 + 0.025 b (a slow sequential sampler): 4 t(1) = 1.3 s allows 40 items -> 32."""
    choice, made = _choose(virtual_cuda.clock, 0.3, 0.025, max_call_seconds=0.075)
    assert choice.batch == 32 and made == [1, 1, 4, 16, 32] and choice.call_seconds == pytest.approx(1.1)


def test_choose_batch_re_measures_a_sublinear_cost(virtual_cuda):
    """t(b) = 0.1 + 0.05 sqrt(b) (a sampler whose cost grows sublinearly): the slope between small
    sizes overstates larger ones, so the ramp measures 32 and 64 rather than stopping at 16; 128 would
    take 0.666 s, over the 0.6 s allowance (4 t(1))."""
    clock = virtual_cuda.clock
    made = []

    def call_at(b):
        made.append(b)
        clock.advance(0.1 + 0.05 * math.sqrt(b))

    choice = choose_batch(call_at, 1024, "cuda", max_call_seconds=0.33)
    assert choice.batch == 64 and made == [1, 1, 4, 16, 32, 64] and choice.call_seconds == pytest.approx(0.5)


def test_choose_batch_keeps_the_target_when_the_cost_is_per_call(virtual_cuda):
    """A long chain whose cost does not grow with the batch is timed at the full batch, after one
    probe shows the slope is flat."""
    choice, made = _choose(virtual_cuda.clock, 0.5, 0.0, max_call_seconds=0.075)
    assert choice.batch == 256 and made == [1, 1, 4, 256] and choice.call_seconds == pytest.approx(0.5)


def test_choose_batch_of_a_small_target_times_the_target_itself(virtual_cuda):
    choice, made = _choose(virtual_cuda.clock, 0.01, 0.001, target=3)
    assert choice.batch == 3 and made == [1, 1, 1, 1, 3, 3, 3] and choice.call_seconds == pytest.approx(0.013)


def test_choose_batch_recovers_when_a_jump_lands_over_the_allowance(virtual_cuda):
    """A flat start (t(1) = t(4) = 0.05 s) invites a jump to 256, which takes 5 s: the ramp then
    interpolates between 4 and 256 (slope 5/252 s per item) and settles on 8, which fits."""
    choice, made = _choose(virtual_cuda.clock, 0.05, 0.0, max_call_seconds=0.1, extra=lambda i, b: 5.0 if b == 256 else 0.0)
    assert made == [1, 1, 4, 256, 256, 8] and choice.batch == 8 and choice.call_seconds == pytest.approx(0.05)
    assert choice.probes[-2] == (256, pytest.approx(5.05))  # timed twice: slow both times


def test_choose_batch_times_a_call_over_the_allowance_once_more(virtual_cuda):
    """A first call at a new size that pays a one-time cost (5 s at 256, once) does not shrink the
    batch: the second call at 256 takes 0.0526 s and the target is kept."""
    choice, made = _choose(virtual_cuda.clock, 0.05, 1e-5, max_call_seconds=0.1, extra=lambda i, b: 5.0 if (i, b) == (4, 256) else 0.0)
    assert made == [1, 1, 4, 256, 256] and choice.batch == 256 and not choice.reduced
    assert choice.call_seconds == pytest.approx(0.05256)


# --------------------------------------------------------------------------- CUDA branches on CPU


def test_synchronize_is_a_no_op_on_cpu_and_calls_cuda_on_a_cuda_device(virtual_cuda):
    timing.synchronize("cpu")
    assert virtual_cuda.calls == []
    timing.synchronize("cuda")
    assert virtual_cuda.calls == ["synchronize"]


def test_cuda_timing_uses_events_and_waits_for_the_end_event(virtual_cuda):
    clock, fake = virtual_cuda.clock, virtual_cuda
    t = time_within(lambda: clock.advance(1e-3), "cuda", Budget(0.01, min_repeats=3, max_repeats=4, min_block_seconds=0))
    assert t.clock == "cuda events"
    assert t.seconds == [pytest.approx(1e-3)] * t.repeats and t.repeats == 4  # 0.01 s of 1 ms calls, capped at 4
    assert fake.calls[0] == "synchronize"
    # each timed region: record start, record end, wait for the end event
    assert fake.calls[1:4] == ["event.record", "event.record", "event.synchronize"]
    assert isinstance(timing.stopwatch("cuda"), timing.CudaEventStopwatch)
    assert isinstance(timing.stopwatch("cpu"), timing.WallStopwatch)


def test_cuda_peak_memory_resets_the_peak_around_the_call(monkeypatch):
    fake = install_fake_cuda(monkeypatch, FakeCuda(allocated=1000, peak=5000))
    peak = memory.measure_peak_memory(lambda: fake.calls.append("fn"), "cuda")
    assert fake.calls == ["synchronize", "memory_allocated", "reset_peak_memory_stats", "fn", "synchronize",
                          "max_memory_allocated"]
    # the peak of what the call allocated: the allocator's peak minus what was allocated before it
    assert peak.bytes == 4000 and peak.baseline_bytes == 1000 and "allocator" in peak.source
    assert "above what was allocated before" in peak.scope


MIB = 1024 * 1024
SLACK = 64 * 1024  # bytes: small tensors torch allocates around an operation (scalars, shape buffers)


def test_cpu_peak_memory_is_what_the_call_allocates():
    """Known allocations: the peak is the most the call held at once, whatever the process held before."""
    before = torch.ones(32 * MIB // 4)  # 32 MiB allocated before the call: not part of its figure
    keep = []

    def temporaries():  # 16 MiB, then 16 MiB more while the first is alive, then 8 MiB after both are freed
        a = torch.ones(4 * MIB)
        b = a * 2
        del a, b
        keep.append(torch.zeros(2 * MIB))

    peak = memory.measure_peak_memory(temporaries, "cpu")
    assert 32 * MIB <= peak.bytes <= 32 * MIB + SLACK
    assert 40 * MIB <= peak.allocated_bytes <= 40 * MIB + SLACK and peak.allocations >= 3
    assert "profiler" in peak.source and "above what was allocated before" in peak.scope
    assert peak.baseline_bytes is None

    kept = memory.measure_peak_memory(lambda: keep.append(torch.ones(16 * MIB)), "cpu")  # 64 MiB, kept
    assert 64 * MIB <= kept.bytes <= 64 * MIB + SLACK

    def frees_older_memory():  # freeing what existed before the call does not make the figure negative
        keep.clear()
        return torch.ones(MIB // 4)

    assert MIB <= memory.measure_peak_memory(frees_older_memory, "cpu").bytes <= MIB + SLACK
    assert memory.measure_peak_memory(lambda: None, "cpu").bytes == 0
    del before


def test_allocation_peak_counts_only_blocks_allocated_among_the_events():
    events = [(1, 0xA, -4000),  # a block from before: its free is not counted
              (2, 0xA, 1000),  # the address is reused by a new block
              (3, 0xB, 500), (4, 0xB, -500), (5, 0xC, 2000),  # 1000 + 2000 held at the peak
              (6, 0xA, -1000), (7, 0xD, 100)]
    assert memory.allocation_peak(events) == (3000, 3600, 4)
    assert memory.allocation_peak([]) == (0, 0, 0)


def test_cpu_peak_memory_does_not_grow_with_what_the_process_did_before():
    """The same call measured after a large allocation elsewhere gives the same figure (a process
    high-water mark would report the large allocation)."""
    first = memory.measure_peak_memory(lambda: torch.ones(2 * MIB), "cpu").bytes
    big = torch.ones(256 * MIB // 4)
    big.fill_(1.0)
    del big
    assert memory.measure_peak_memory(lambda: torch.ones(2 * MIB), "cpu").bytes == first


def test_profiler_lines_are_filtered_from_stderr_and_the_calls_own_output_is_kept(capfd):
    import os

    memory.measure_peak_memory(lambda: os.write(2, b"a line the model wrote\n") and torch.ones(10), "cpu")
    err = capfd.readouterr().err
    assert "a line the model wrote" in err
    assert "profiler_start" not in err and "profiler_stop" not in err


def test_peak_memory_is_skipped_with_a_reason_where_it_cannot_be_measured():
    from harness import MetricSkipped

    with pytest.raises(MetricSkipped, match="no allocator statistic for meta"):
        memory.measure_peak_memory(lambda: None, "meta")
    with torch.autograd.profiler.profile():  # a profiler of someone else's is left alone
        with pytest.raises(memory.MemoryUnmeasurable, match="another torch profiler"):
            memory.measure_peak_memory(lambda: None, "cpu")


def test_device_name_on_cuda_comes_from_torch_cuda(virtual_cuda):
    assert details.device_name("cuda") == "NVIDIA H100 80GB HBM3"
    assert isinstance(details.device_name("cpu"), str)


def test_the_machine_calibration_times_its_workloads_with_the_same_recipe(virtual_cuda):
    """On a CUDA device the calibration's rounds are timed with CUDA events, in blocks that span the
    minimum block length, and each workload's figure is the median seconds per call."""
    from harness import machine

    clock = virtual_cuda.clock
    durations = {"even": 1e-3, "uneven": 3e-4}
    workloads = [machine.Workload(name, "", lambda device, t=t: lambda: clock.advance(t))
                 for name, t in durations.items()]
    result = machine.Calibration("cuda", workloads).full(seconds=0.01).result()
    for name, seconds in durations.items():
        figure = result["workloads"][name]
        assert figure["seconds"] == pytest.approx(seconds, rel=1e-9)
        assert figure["block"] == timing.calls_per_block(seconds, machine.MIN_BLOCK_SECONDS) > 1
    assert "event.record" in virtual_cuda.calls and result["device"] == "cuda"
