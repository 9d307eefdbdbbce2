"""The batch a speed measurement times: the largest up to a target whose calls fit the time budget."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from harness.timing import stopwatch


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
                 growth: int = 4, max_growth: float = 4.0, probe_tries: int = 3) -> BatchChoice:
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
    shrink the batch; a call over the allowance is timed once more and the faster kept (a first call
    at a new size can pay one-time costs, and on a loaded machine a multi-threaded call can wait for
    a core at every operation, so one slow call says little). Before any slope is known, the cost is
    taken to grow linearly with the batch.

    The second allowance keeps samplers whose cost is a fixed per-call overhead (a long Markov chain,
    a sequential decoder) at the full batch: a smaller one would not make their calls much cheaper,
    only their throughput wrong. Every call made here also warms the model up.
    """
    if target <= 1:
        return BatchChoice(max(target, 1), max(target, 1))
    watch = stopwatch(device)
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

