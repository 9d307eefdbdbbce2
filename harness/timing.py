"""The timing recipe: warm-up, timed repeats within a time budget, the median with its spread.

Both the machine calibration (:mod:`harness.machine`) and the speed metrics time calls with it, so a
figure means the same wherever it is measured. Three layers, each usable on its own:

- statistics on a list of repeat values: :func:`median`, :func:`quantile` (numpy's default linear
  interpolation) and :func:`quantile_stderr` (the Maritz-Jarrett standard error of a sample quantile;
  :func:`median_stderr` is its q = 0.5 case);
- device primitives: :func:`synchronize` and a :class:`Stopwatch` per device (:func:`stopwatch`:
  ``perf_counter`` on CPU, CUDA events on a GPU). They reach CUDA through ``torch.cuda`` when they
  run, so the CUDA branches follow whatever ``torch.cuda`` is at that moment;
- measurement: :func:`time_blocks` (timed blocks of calls), :func:`calls_per_block` and
  :func:`plan_repeats` (how many calls a block and how many blocks a :class:`Budget` allows) and
  :func:`time_within` (warm-up, then timed blocks sized to a budget).

Only the calls themselves run inside a timed region: a block is ``start(); for _ in range(k): fn();
stop()``, where ``stop`` waits for the device before reading the clock. docs/benchmarks.md describes
how the speed metrics use this recipe.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

SHORTEST_CALL = 1e-9  # seconds: the floor under a measured call time (a clock's resolution)

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


def synchronize(device) -> None:
    """Wait for queued work on ``device`` (a no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Times one region: ``start()`` then ``stop() -> seconds``. See :func:`stopwatch`."""

    kind = "abstract"

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class WallStopwatch(Stopwatch):
    """``time.perf_counter`` around the region (CPU work is done when the call returns)."""

    kind = "perf_counter"

    def __init__(self):
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter() - self._t0


class CudaEventStopwatch(Stopwatch):
    """CUDA events recorded on the device's current stream around the region.

    ``stop`` records the end event and waits for it, so the elapsed time covers every kernel the
    region queued, and any gap in which the GPU waited for the host. Events are created once.
    """

    kind = "cuda events"

    def __init__(self, device):
        self._device = torch.device(device)
        self._stream = torch.cuda.current_stream(self._device)
        self._begin = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(self._device)  # start from an idle device

    def start(self) -> None:
        self._begin.record(self._stream)

    def stop(self) -> float:
        self._end.record(self._stream)
        self._end.synchronize()
        return self._begin.elapsed_time(self._end) / 1e3  # elapsed_time is in milliseconds


def stopwatch(device) -> Stopwatch:
    """CUDA events on a CUDA device, ``perf_counter`` elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return CudaEventStopwatch(device)
    return WallStopwatch()


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

    def rates(self, items_per_call: float) -> list:
        """Items per second in each repeat."""
        return [items_per_call / s if s > 0 else math.inf for s in self.per_call]


@dataclass(frozen=True)
class Budget:
    """How long a measurement may take.

    ``seconds``: the target for the timed repeats; ``max_seconds``: the most they may take when
    ``min_repeats`` forces more (default 2.5 x ``seconds``); a single repeat is always made.
    ``min_block_seconds``: a timed repeat spans at least this long, as a block of several calls when
    calls are shorter, and blocks grow until ``max_repeats`` of them fill ``seconds`` (0 times every
    call on its own, as latency needs). ``precision``: stop early, once ``min_repeats`` repeats are
    made, when the median's standard error (:func:`median_stderr`) is at most this fraction of the
    median (checked as the repeats grow by a quarter: :func:`precise_enough`); None fills the budget.
    """

    seconds: float
    min_repeats: int = 3
    max_repeats: int = 50
    min_block_seconds: float = 2e-3
    max_seconds: Optional[float] = None
    warmup: int = 1
    precision: Optional[float] = None

    @property
    def limit(self) -> float:
        return self.max_seconds if self.max_seconds is not None else 2.5 * self.seconds

    @property
    def max_call_seconds(self) -> float:
        """The longest call that still leaves room for the warm-up and ``min_repeats`` repeats."""
        return self.limit / (self.min_repeats + 1)


def calls_per_block(call_seconds: float, min_block_seconds: float) -> int:
    """How many calls of ``call_seconds`` a timed block needs to span ``min_block_seconds`` (at least one)."""
    return max(1, math.ceil(min_block_seconds / max(call_seconds, SHORTEST_CALL)))


def plan_repeats(call_seconds: float, budget: Budget) -> tuple:
    """(calls per repeat, repeats) for calls of ``call_seconds`` under ``budget``."""
    call_seconds = max(call_seconds, SHORTEST_CALL)
    calls = 1
    if budget.min_block_seconds > 0:  # blocks of at least min_block_seconds, long enough to fill the budget
        calls = max(calls_per_block(call_seconds, budget.min_block_seconds),
                    math.floor(budget.seconds / (budget.max_repeats * call_seconds)))
    block = calls * call_seconds
    repeats = min(max(math.floor(budget.seconds / block), budget.min_repeats), budget.max_repeats)
    if repeats * block > budget.limit:
        repeats = max(1, math.floor(budget.limit / block))
    return calls, repeats


def precise_enough(min_repeats: int, precision: Optional[float]) -> Optional[Callable[[list], bool]]:
    """The early stop of :class:`Budget` ``precision``: a test of the block times so far, true once there
    are at least ``min_repeats`` and the median's standard error is at most ``precision`` times the
    median. It looks at the first ``min_repeats`` and then whenever the count has grown by a quarter,
    so a long measurement computes the standard error a dozen times, not after every block."""
    if precision is None:
        return None
    due = [max(2, min_repeats)]

    def enough(seconds: list) -> bool:
        if len(seconds) < due[0]:
            return False
        due[0] = max(len(seconds) + 1, math.ceil(1.25 * len(seconds)))
        middle = median(seconds)
        stderr = median_stderr(seconds)
        return middle > 0 and stderr is not None and stderr <= precision * middle

    return enough


def time_blocks(fn: Callable[[], object], calls: int, repeats: int, watch: Stopwatch,
                limit_seconds: Optional[float] = None, enough: Optional[Callable[[list], bool]] = None) -> list:
    """``repeats`` timed blocks of ``calls`` calls each: nothing but the calls inside the timed region.
    With ``limit_seconds``, no block starts once the blocks so far have taken that long (calls that
    slow down after the plan was made, e.g. on a machine that became busy, cannot stretch a
    measurement past its budget by more than one block); with ``enough``, none starts once
    ``enough(block times so far)`` is true (:func:`precise_enough`)."""
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
        if enough is not None and enough(out):
            break
    return out


def time_within(fn: Callable[[], object], device, budget: Budget,
                warm_call_seconds: Optional[float] = None) -> Timing:
    """Warm up, then time blocks of calls to ``fn`` within ``budget``.

    The last warm-up call is timed to size the blocks; calls shorter than the block length are
    calibrated once more over a short block. Pass ``warm_call_seconds`` when ``fn`` has just run (and
    was timed) elsewhere, e.g. by a batch search: the warm-up is then skipped.
    """
    watch = stopwatch(device)
    warmup_calls = 0
    call_seconds = warm_call_seconds
    if call_seconds is None:
        for _ in range(max(budget.warmup - 1, 0)):
            fn()
        call_seconds = time_blocks(fn, 1, 1, watch)[0]
        warmup_calls = max(budget.warmup, 1)
    if budget.min_block_seconds > 0 and call_seconds < budget.min_block_seconds:
        calls = calls_per_block(call_seconds, budget.min_block_seconds)
        call_seconds = time_blocks(fn, calls, 1, watch)[0] / calls
        warmup_calls += calls
    calls, repeats = plan_repeats(call_seconds, budget)
    enough = precise_enough(budget.min_repeats, budget.precision)
    return Timing(time_blocks(fn, calls, repeats, watch, limit_seconds=budget.limit, enough=enough), calls,
                  warmup_calls, watch.kind)
