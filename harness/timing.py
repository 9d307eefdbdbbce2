"""Timing helpers for speed metrics: warm-up, repeats, median with spread; CUDA work is timed
after synchronising (events would add nothing for whole-call timings)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Timing:
    seconds: list  # one entry per timed repeat

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def quantile(self, q: float) -> float:
        s = sorted(self.seconds)
        if len(s) == 1:
            return s[0]
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    def rate_stderr(self, items: int) -> float:
        """Standard error of the median rate items/median (delta method; median's se ~ 1.2533 sd/sqrt n)."""
        if len(self.seconds) < 2:
            return 0.0
        rates = [items / s for s in self.seconds]
        return 1.2533 * statistics.stdev(rates) / len(rates) ** 0.5


def synchronize(device) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeats(fn: Callable[[], object], device, warmup: int = 1, repeats: int = 5) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronising on CUDA)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - start)
    return Timing(out)
