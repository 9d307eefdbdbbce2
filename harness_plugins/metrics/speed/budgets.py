"""The speed metrics' sizes per profile: timed repeats and the time budgets that bound them.

Each profile declares, for throughput (sample and evaluation calls) and for latency (one-sample
calls): the seconds of timed repeats a measurement aims at (``*_seconds``), the most they may take
when ``min_repeats`` forces more repeats than fit in that (``*_limit``; it also sets the longest call
a batch may take, limit / (min_repeats + 1)) and the most repeats (``*_max_repeats``). At quick the
limits are far above the budgets (2.0 s / 0.75 s against 0.25 s / 0.1 s): a slow sampler still gets
a large batch and its repeats, while fast ones (2-D toys, calls of a few ms) stop at the budget.
Throughput repeats stop sooner when the median is already known to ``throughput_precision`` (its
standard error as a fraction of it; :class:`harness.timing.Budget` ``precision``); latency repeats
do not, since their 95th percentile needs the repeats.
"""

from __future__ import annotations

from harness.contracts import ProfileSizes
from harness.timing import Budget

SIZES = ProfileSizes({
    "smoke": {"min_repeats": 3, "throughput_seconds": 0.12, "throughput_limit": 0.3, "throughput_max_repeats": 25,
              "throughput_precision": 0.02,
              "latency_seconds": 0.05, "latency_limit": 0.125, "latency_max_repeats": 30},
    "quick": {"min_repeats": 5, "throughput_seconds": 0.25, "throughput_limit": 2.0, "throughput_max_repeats": 50,
              "throughput_precision": 0.01,
              "latency_seconds": 0.1, "latency_limit": 0.75, "latency_max_repeats": 100},
    "full": {"min_repeats": 20, "throughput_seconds": 5.0, "throughput_limit": 12.5, "throughput_max_repeats": 200,
             "throughput_precision": 0.005,
             "latency_seconds": 2.0, "latency_limit": 5.0, "latency_max_repeats": 500},
})

LATENCY_MIN_REPEATS = 5  # at least this many one-sample calls, so the 95th percentile has some footing


def throughput_budget(profile, scale: float = 1.0) -> Budget:
    """The budget of a throughput measurement under ``profile``, its seconds and limit times ``scale``."""
    sizes = SIZES.of(profile)
    return Budget(sizes["throughput_seconds"] * scale, min_repeats=max(int(sizes["min_repeats"]), 1),
                  max_repeats=sizes["throughput_max_repeats"], max_seconds=sizes["throughput_limit"] * scale,
                  precision=sizes["throughput_precision"])


def latency_budget(profile) -> Budget:
    """Every call timed on its own, at least :data:`LATENCY_MIN_REPEATS` of them."""
    sizes = SIZES.of(profile)
    return Budget(sizes["latency_seconds"], min_repeats=max(int(sizes["min_repeats"]), LATENCY_MIN_REPEATS),
                  max_repeats=sizes["latency_max_repeats"], min_block_seconds=0.0, max_seconds=sizes["latency_limit"])
