"""Timing helpers for speed metrics: warm-up, repeats within a time budget, median with spread.

Three layers, each usable on its own:

- statistics on a list of repeat values: :func:`median`, :func:`quantile` (numpy's default linear
  interpolation) and :func:`quantile_stderr` (the Maritz-Jarrett standard error of a sample quantile;
  :func:`median_stderr` is its q = 0.5 case);
- device primitives: :func:`synchronize`, a :class:`Stopwatch` per device (``perf_counter`` on CPU,
  CUDA events on a GPU) and :func:`measure_peak_memory` (the peak of memory allocated during one call:
  the CUDA allocator's statistics on a GPU, torch's profiler memory events on a CPU). The CUDA
  branches take the ``torch.cuda`` module as an argument (``cuda=None`` means ``torch.cuda``), so a
  test can drive them with a stand-in on a machine without a GPU;
- measurement: :func:`time_within` (warm-up, then timed blocks of calls sized to a :class:`Budget`)
  and :func:`choose_batch` (the largest batch up to a target whose calls fit the budget).

Only the calls themselves run inside a timed region: a block is ``start(); for _ in range(k): fn();
stop()``, where ``stop`` synchronises the device before reading the clock.

Peak memory is the peak, during one call, of the memory torch allocated in that call and had not yet
freed: what the call itself needs on top of what was already allocated (model parameters, caches),
so two models' figures differ by what their sampling allocates, and a job's figure does not depend
on what ran before it in the process. On CUDA it is ``max_memory_allocated`` after
``reset_peak_memory_stats``, minus ``memory_allocated`` before the call. On CPU torch keeps no such
statistics; the three ways to get them were weighed:

- ``tracemalloc`` sees only allocations made through Python's allocator: torch's tensors come from its
  C++ allocator (``c10::alloc_cpu``) and are invisible to it, so a sampler's tensors would count 0;
- a fresh worker process per measurement (its peak RSS minus its RSS before the call) would need the
  fitted model to be pickled or re-fitted there, which not every model supports; RSS also counts
  pages the C allocator keeps after a free, so a second call can show 0 and a first one the
  allocator's history;
- torch's profiler with ``profile_memory=True`` receives an event from torch's CPU allocator for every
  allocation and free in the profiled thread (the same events behind ``torch.profiler``'s memory
  view), with its address and size. Summing the allocations and the frees of those same addresses
  gives the memory the call allocated and still holds at each moment; its maximum is the peak. Frees
  of blocks allocated before the call are left out (they release memory the call did not allocate),
  so nothing allocated before the call, by the model or by earlier jobs, enters the figure.

The profiler is used. What it does not see: memory allocated outside torch's allocator (numpy
arrays, MKL or oneDNN scratch buffers, Python objects) and allocations made on other threads than
the calling one. When the profiler cannot be started (another profiler is running) or reports no
allocations on this build, :class:`MemoryUnmeasurable` (a ``MetricSkipped``) says why. The profiler
writes progress lines (kineto's ``profiler_start`` / ``profiler_stop``) to the process's standard
error; those, and only those, are filtered out of what the call writes there.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from harness import MetricSkipped

# --------------------------------------------------------------------------- statistics


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation between order statistics
    (numpy's default method, ``numpy.quantile(values, q)``)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile level must lie in [0, 1], not {q}")
    s = sorted(float(v) for v in values)
    if not s:
        raise ValueError("quantile of no values")
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def quantile_stderr(values: Sequence[float], q: float) -> Optional[float]:
    """Maritz-Jarrett standard error of the sample q-quantile (None for fewer than two values).

    The m-th order statistic, m = floor(q n + 1/2) clamped to 1..n, is distributed as the data's
    quantile function at U ~ Beta(m, n - m + 1). Replacing that function by the empirical one gives
    weights W_i = P((i-1)/n < U <= i/n) and the estimate sqrt(sum W_i x_(i)^2 - (sum W_i x_(i))^2).
    It needs no normality assumption, which suits skewed timing data.
    """
    from scipy.special import betainc

    s = sorted(float(v) for v in values)
    n = len(s)
    if n < 2:
        return None
    m = min(max(math.floor(q * n + 0.5), 1), n)
    a, b = m, n - m + 1
    cdf = [float(betainc(a, b, i / n)) for i in range(n + 1)]
    w = [cdf[i + 1] - cdf[i] for i in range(n)]
    c1 = sum(wi * x for wi, x in zip(w, s))
    c2 = sum(wi * x * x for wi, x in zip(w, s))
    return math.sqrt(max(c2 - c1 * c1, 0.0))


def median_stderr(values: Sequence[float]) -> Optional[float]:
    return quantile_stderr(values, 0.5)


# --------------------------------------------------------------------------- device primitives


def _cuda(cuda):
    return torch.cuda if cuda is None else cuda


def synchronize(device, cuda=None) -> None:
    """Wait for queued work on ``device`` (a no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        _cuda(cuda).synchronize(device)


class Stopwatch:
    """Times one region: ``start()`` then ``stop() -> seconds``. See :func:`stopwatch`."""

    kind = "abstract"

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class WallStopwatch(Stopwatch):
    """``time.perf_counter`` around the region; ``sync`` (if given) runs before both clock reads."""

    kind = "perf_counter"

    def __init__(self, sync: Optional[Callable[[], None]] = None):
        self._sync = sync
        self._t0 = 0.0

    def start(self) -> None:
        if self._sync is not None:
            self._sync()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter() - self._t0


class CudaEventStopwatch(Stopwatch):
    """CUDA events recorded on the device's current stream around the region.

    ``stop`` records the end event and waits for it, so the elapsed time covers every kernel the
    region queued, and any gap in which the GPU waited for the host. Events are created once.
    """

    kind = "cuda events"

    def __init__(self, device, cuda=None):
        self._cuda = _cuda(cuda)
        self._device = torch.device(device)
        self._stream = self._cuda.current_stream(self._device)
        self._begin = self._cuda.Event(enable_timing=True)
        self._end = self._cuda.Event(enable_timing=True)
        self._cuda.synchronize(self._device)  # start from an idle device

    def start(self) -> None:
        self._begin.record(self._stream)

    def stop(self) -> float:
        self._end.record(self._stream)
        self._end.synchronize()
        return self._begin.elapsed_time(self._end) / 1e3  # elapsed_time is in milliseconds


def stopwatch(device, cuda=None) -> Stopwatch:
    """CUDA events on a CUDA device, ``perf_counter`` elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return CudaEventStopwatch(device, cuda)
    return WallStopwatch()


def device_name(device, cuda=None) -> str:
    """The GPU's name on CUDA (``torch.cuda.get_device_name``); the processor on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return str(_cuda(cuda).get_device_name(device))
    return platform.processor() or platform.machine() or "cpu"


class MemoryUnmeasurable(MetricSkipped):
    """Peak memory cannot be measured here (the device, or the profiler); the message says why."""


PEAK_SCOPE = "peak of the memory allocated during this call and not yet freed, above what was allocated before it"


@dataclass
class MemoryPeak:
    """A peak memory figure: ``bytes`` and what it is (``source``, ``scope``).

    ``bytes``: the peak, during the call, of memory allocated in the call and not yet freed.
    ``baseline_bytes``: what was already allocated when the call began (CUDA; not part of ``bytes``).
    ``allocated_bytes`` / ``allocations``: the total the call allocated and in how many blocks (CPU).
    """

    bytes: int
    source: str
    scope: str
    baseline_bytes: Optional[int] = None
    allocated_bytes: Optional[int] = None
    allocations: Optional[int] = None


def measure_peak_memory(fn: Callable[[], object], device, cuda=None) -> MemoryPeak:
    """Run ``fn`` once and return the peak of the memory allocated during the call (see the module
    docstring): on CUDA from the allocator's statistics, on CPU from torch's profiler memory events.
    Raises :class:`MemoryUnmeasurable` on other devices, or when the CPU profiler is unusable."""
    device = torch.device(device)
    if device.type == "cuda":
        c = _cuda(cuda)
        c.synchronize(device)
        baseline = int(c.memory_allocated(device))
        c.reset_peak_memory_stats(device)
        fn()
        c.synchronize(device)
        peak = int(c.max_memory_allocated(device))
        return MemoryPeak(max(peak - baseline, 0), "cuda allocator (torch.cuda.max_memory_allocated minus "
                          "torch.cuda.memory_allocated before the call)", PEAK_SCOPE, baseline)
    if device.type == "cpu":
        return cpu_allocation_peak(fn)
    raise MemoryUnmeasurable(f"peak memory is measured on CPU (torch profiler memory events) and CUDA (allocator "
                             f"statistics); there is no allocator statistic for {device.type}")


# Lines the profiler itself writes to the process's stderr: kineto's log lines
# ("USDT:2026-01-01 10:00:00 123:123 SyncActivityProfilerHandler.cpp:39] profiler_start", "STAGE:...",
# "ERROR:... DeviceProperties.cpp:56] gpuGetDeviceCount failed" on a CUDA build without a GPU) and
# c10's warning about frees of memory allocated before profiling started.
_PROFILER_NOISE = re.compile(
    r"^(?:[A-Z]+:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ \w+\.cpp:\d+\]"
    r"|\[W\d{4} [^\]]*CPUAllocator\.cpp:\d+\] Memory block of unknown size)")


@contextlib.contextmanager
def _without_profiler_noise():
    """Route the process's stderr (file descriptor 2, where C++ code writes) to a temporary file for
    the duration, then write back every line that is not one of :data:`_PROFILER_NOISE`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: leave it alone
        yield
        return
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", errors="replace")
                kept = "".join(line for line in text.splitlines(keepends=True) if not _PROFILER_NOISE.match(line))
                if kept:
                    os.write(2, kept.encode("utf-8"))
    finally:
        os.close(saved)


def _allocation_events(result) -> list:
    """(nanoseconds, pointer, bytes) of every CPU allocation (+) and free (-) in a profiler result, in order."""
    try:
        from torch._C._profiler import _EventType

        allocation, found = _EventType.Allocation, []
        stack = [iter(result.experimental_event_tree())]
        while stack:  # depth first, in the order the tree lists events
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
            elif node.tag == allocation:
                e = node.extra_fields
                if e.device.type == "cpu":
                    found.append((node.start_time_ns, len(found), e.ptr, e.alloc_size))
            else:
                children = node.children
                if children:
                    stack.append(iter(children))
    except (ImportError, AttributeError) as exc:  # the event tree is an experimental torch API
        raise MemoryUnmeasurable(f"torch {torch.__version__}'s profiler gives no allocation events to read "
                                 f"({type(exc).__name__}: {exc})") from exc
    found.sort()  # by time; simultaneous events keep the tree's order
    return [(ns, int(ptr), int(nbytes)) for ns, _, ptr, nbytes in found]


def _cpu_memory_events(fn: Callable[[], object]) -> list:
    """(nanoseconds, pointer, bytes) of every CPU allocation (+) and free (-) torch's profiler saw
    during ``fn()``, in order."""
    from torch.autograd.profiler import profile

    if torch.autograd._profiler_enabled():  # a second session would end the running one's without a word
        raise MemoryUnmeasurable("another torch profiler is running in this process, and the allocation events "
                                 "peak memory needs come from a profiler session of its own")
    with _without_profiler_noise():
        profiler = profile(use_cpu=True, profile_memory=True)
        try:
            profiler.__enter__()
        except RuntimeError as exc:
            raise MemoryUnmeasurable(f"the torch profiler could not be started to record allocations ({exc})") from exc
        try:
            fn()
        finally:
            profiler.__exit__(None, None, None)
    return _allocation_events(profiler.kineto_results)


def allocation_peak(events) -> tuple:
    """(peak, total allocated, allocations) from (nanoseconds, pointer, bytes) events in order: the
    running sum of the blocks allocated among these events and not yet freed. A free of a block
    allocated before them (the allocator may know its size from an earlier profiling session) is
    not counted: it released memory the call did not allocate."""
    live: dict = {}
    held = peak = allocated = count = 0
    for _, ptr, nbytes in events:
        if nbytes > 0:
            held += nbytes - live.get(ptr, 0)  # (a pointer reported twice without a free in between: once)
            live[ptr] = nbytes
            allocated += nbytes
            count += 1
            peak = max(peak, held)
        elif ptr in live:
            held -= live.pop(ptr)
    return peak, allocated, count


PROBE_ELEMENTS = 1 << 16  # float32: 256 KiB


_CPU_EVENTS_CHECKED: list = []  # [None or the reason], once the probe has run in this process


def _cpu_events_missing() -> Optional[str]:
    """None when the profiler reports CPU allocations on this build, else the reason (probed once:
    a known allocation must show up among the events)."""
    if not _CPU_EVENTS_CHECKED:
        events = _cpu_memory_events(lambda: torch.empty(PROBE_ELEMENTS, dtype=torch.float32).fill_(1.0))
        seen = any(nbytes == 4 * PROBE_ELEMENTS for _, _, nbytes in events)
        _CPU_EVENTS_CHECKED.append(None if seen else (
            f"torch {torch.__version__}'s profiler reported no CPU allocation events (profile_memory=True), so the "
            "memory a call allocates cannot be measured on this build"))
    return _CPU_EVENTS_CHECKED[0]


def cpu_allocation_peak(fn: Callable[[], object]) -> MemoryPeak:
    """Run ``fn`` once under torch's profiler and return the peak of the running sum of its CPU
    allocation events: the most memory the call had allocated and not yet freed at any moment."""
    missing = _cpu_events_missing()
    if missing:
        raise MemoryUnmeasurable(missing)
    peak, allocated, count = allocation_peak(_cpu_memory_events(fn))
    return MemoryPeak(peak, "torch profiler memory events (CPU allocator, profile_memory=True)", PEAK_SCOPE,
                      allocated_bytes=allocated, allocations=count)


# --------------------------------------------------------------------------- measurement


@dataclass
class Timing:
    """Timed repeats of a call: ``seconds[i]`` is the duration of repeat i, a block of
    ``calls_per_repeat`` consecutive calls; ``warmup_calls`` untimed calls came first."""

    seconds: list
    calls_per_repeat: int = 1
    warmup_calls: int = 0
    clock: str = WallStopwatch.kind

    @property
    def repeats(self) -> int:
        return len(self.seconds)

    @property
    def per_call(self) -> list:
        """Seconds per call in each repeat."""
        return [s / self.calls_per_repeat for s in self.seconds]

    @property
    def median(self) -> float:
        """Median seconds per call."""
        return median(self.per_call)

    def quantile(self, q: float) -> float:
        """q-quantile of the seconds per call."""
        return quantile(self.per_call, q)

    def rates(self, items_per_call: float) -> list:
        """Items per second in each repeat."""
        return [items_per_call / s if s > 0 else math.inf for s in self.per_call]

    def rate_stderr(self, items_per_call: float) -> float:
        """Standard error of the median rate (Maritz-Jarrett; 0 with a single repeat)."""
        return median_stderr(self.rates(items_per_call)) or 0.0


@dataclass(frozen=True)
class Budget:
    """How long a measurement may take.

    ``seconds``: the target for the timed repeats; ``max_seconds``: the most they may take when
    ``min_repeats`` forces more (default 2.5 x ``seconds``); a single repeat is always made.
    ``min_block_seconds``: a timed repeat spans at least this long, as a block of several calls when
    calls are shorter, and blocks grow until ``max_repeats`` of them fill ``seconds`` (0 times every
    call on its own, as latency needs).
    """

    seconds: float
    min_repeats: int = 3
    max_repeats: int = 50
    min_block_seconds: float = 2e-3
    max_seconds: Optional[float] = None
    warmup: int = 1

    @property
    def limit(self) -> float:
        return self.max_seconds if self.max_seconds is not None else 2.5 * self.seconds

    @property
    def max_call_seconds(self) -> float:
        """The longest call that still leaves room for the warm-up and ``min_repeats`` repeats."""
        return self.limit / (self.min_repeats + 1)


def plan_repeats(call_seconds: float, budget: Budget) -> tuple:
    """(calls per repeat, repeats) for calls of ``call_seconds`` under ``budget``."""
    call_seconds = max(call_seconds, 1e-9)
    calls = 1
    if budget.min_block_seconds > 0:  # blocks of at least min_block_seconds, long enough to fill the budget
        calls = max(1, math.ceil(budget.min_block_seconds / call_seconds),
                    math.floor(budget.seconds / (budget.max_repeats * call_seconds)))
    block = calls * call_seconds
    repeats = min(max(math.floor(budget.seconds / block), budget.min_repeats), budget.max_repeats)
    if repeats * block > budget.limit:
        repeats = max(1, math.floor(budget.limit / block))
    return calls, repeats


def time_blocks(fn: Callable[[], object], calls: int, repeats: int, watch: Stopwatch,
                limit_seconds: Optional[float] = None) -> list:
    """``repeats`` timed blocks of ``calls`` calls each: nothing but the calls inside the timed region.
    With ``limit_seconds``, no block starts once the blocks so far have taken that long (calls that
    slow down after the plan was made, e.g. on a machine that became busy, cannot stretch a
    measurement past its budget by more than one block)."""
    out = []
    block = range(calls)
    spent = 0.0
    for _ in range(repeats):
        watch.start()
        for _ in block:
            fn()
        out.append(watch.stop())
        spent += out[-1]
        if limit_seconds is not None and spent >= limit_seconds:
            break
    return out


def time_within(fn: Callable[[], object], device, budget: Budget, warm_call_seconds: Optional[float] = None,
                cuda=None) -> Timing:
    """Warm up, then time blocks of calls to ``fn`` within ``budget``.

    The last warm-up call is timed to size the blocks; calls shorter than the block length are
    calibrated once more over a short block. Pass ``warm_call_seconds`` when ``fn`` has just run (and
    was timed) elsewhere, e.g. by :func:`choose_batch`: the warm-up is then skipped.
    """
    watch = stopwatch(device, cuda)
    warmup_calls = 0
    call_seconds = warm_call_seconds
    if call_seconds is None:
        for _ in range(max(budget.warmup - 1, 0)):
            fn()
        call_seconds = time_blocks(fn, 1, 1, watch)[0]
        warmup_calls = max(budget.warmup, 1)
    if budget.min_block_seconds > 0 and call_seconds < budget.min_block_seconds:
        calls = math.ceil(budget.min_block_seconds / max(call_seconds, 1e-9))
        call_seconds = time_blocks(fn, calls, 1, watch)[0] / calls
        warmup_calls += calls
    calls, repeats = plan_repeats(call_seconds, budget)
    return Timing(time_blocks(fn, calls, repeats, watch, limit_seconds=budget.limit), calls, warmup_calls, watch.kind)


@dataclass
class BatchChoice:
    """The batch :func:`choose_batch` settled on; ``call_seconds`` is the duration of a call at that
    batch that has just run (None if none has); ``probes`` are the (batch, seconds) calls it timed."""

    batch: int
    target: int
    call_seconds: Optional[float] = None
    probes: list = field(default_factory=list)
    calls: int = 0

    @property
    def reduced(self) -> bool:
        """True when the batch is smaller than the target because calls at the target were too long."""
        return self.batch < self.target


def choose_batch(call_at: Callable[[int], object], target: int, device, max_call_seconds: float,
                 growth: int = 4, max_growth: float = 4.0, probe_tries: int = 3, cuda=None) -> BatchChoice:
    """The largest batch up to ``target`` whose call should take at most ``max_call_seconds``, or
    ``max_growth`` times a one-item call if that is longer.

    One untimed call at batch 1 (first calls pay one-time costs), then timed calls at growing batches
    1, 4, 16, ... (``growth`` times the last). The slope between the last two sizes predicts the next
    call; the ramp jumps straight to ``target`` once the call there is predicted to take at most half
    the allowance; when the next size would exceed the allowance it tries the largest power of two
    the slope says fits instead, and stops when that is no larger than the last size measured (a
    slope from smaller sizes overstates the cost of a sampler whose cost grows sublinearly, so the
    ramp re-measures rather than extrapolates far). A call that turns out longer than the allowance
    becomes an upper reference: the ramp goes on between the last size that fitted and that one, on
    the slope between the two. Calls shorter than a quarter of ``max_call_seconds`` are timed
    ``probe_tries`` times and the fastest kept, so one preempted call on a busy machine does not
    shrink the batch; a call over the allowance is timed once more and the faster kept
    (a first call at a new size can pay one-time costs, and on a loaded machine a multi-threaded call
    can wait tens of milliseconds an operation for a core: seen here, a 3-layer MLP's sampling chain
    at batch 4 taking 2.8 s once and 0.03 s the next time). Before any slope is known, the cost is taken to grow linearly with the batch.

    The second allowance keeps samplers whose cost is a fixed per-call overhead (a long Markov chain,
    a sequential decoder) at the full batch: a smaller one would not make their calls much cheaper,
    only their throughput wrong. Every call made here also warms the model up.
    """
    if target <= 1:
        return BatchChoice(max(target, 1), max(target, 1))
    watch = stopwatch(device, cuda)
    made = [0]

    def timed(b):
        made[0] += 1
        watch.start()
        call_at(b)
        return watch.stop()

    def measure(b, allowance=None):
        t = timed(b)
        if t < max_call_seconds / 4:
            t = min([t] + [timed(b) for _ in range(probe_tries - 1)])
        elif allowance is not None and t > allowance:  # a first call at a new size may pay one-time costs
            t = min(t, timed(b))
        return t

    call_at(1)
    made[0] += 1
    probes = [(1, measure(1))]
    allowed = max(max_call_seconds, max_growth * probes[0][1])
    good = list(probes)  # (batch, seconds) within the allowance, ascending
    too_long = None  # the smallest batch measured over the allowance
    while good[-1][0] < target:
        b1, t1 = good[-1]
        if too_long is not None:
            b0, t0 = too_long
            slope = max((t0 - t1) / (b0 - b1), 1e-12)
        else:
            b0, t0 = good[-2] if len(good) > 1 else (0, 0.0)
            slope = max((t1 - t0) / (b1 - b0), 0.0)

        def predict(n):
            return t1 + slope * (n - b1)

        if too_long is None and predict(target) <= allowed / 2:
            step = target
        else:
            below = 2 ** int(math.floor(math.log2(too_long[0] - 1))) if too_long else target  # powers of two
            step = min(target, growth * b1, below)
            if predict(step) > allowed:  # the largest power of two the slope says fits
                step = 2 ** int(math.floor(math.log2(max(1.0, min(b1 + (allowed - t1) / slope, step)))))
        if step <= b1:
            break
        t = measure(step, allowed)
        probes.append((step, t))
        if t <= allowed:
            good.append((step, t))
        elif too_long is None or step < too_long[0]:
            too_long = (step, t)
    b, t = good[-1]
    return BatchChoice(b, target, t, probes, calls=made[0])


def time_repeats(fn: Callable[[], object], device, warmup: int = 1, repeats: int = 5) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed, one call per repeat."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    watch = stopwatch(device)
    return Timing(time_blocks(fn, 1, repeats, watch), 1, warmup, watch.kind)
