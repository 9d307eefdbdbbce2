"""The calls the speed metrics time, and the cache that lets one job's speed metrics share them.

The metrics of one job share their calls: the batch choice, the timings and the one instrumented call
(FLOP counter and peak memory) are made once per job and reused, whichever metric asks first.
Evaluation calls score test examples from ``ctx.evaluation_split(b)`` (a call at batch b scores the
first b examples of the fixed evaluation permutation), the examples the likelihood metrics use.
"""

from __future__ import annotations

import functools
import weakref
from typing import Callable

import torch

from harness import Capability, MetricContext

SAMPLING_SEED_OFFSET = 17  # generator offset for the speed metrics' own sampling calls


def job_cache(ctx: MetricContext) -> dict:
    """A dict shared by the speed metrics of one job (keyed weakly by the fitted model object).

    Values never reference the model, so an entry disappears with its job's model."""
    table = ctx.run_cache.setdefault("speed_metrics", weakref.WeakKeyDictionary())
    try:
        return table.setdefault(ctx.model, {})
    except TypeError:  # a model that cannot be weakly referenced or hashed: no sharing
        return {}


def cached(ctx: MetricContext, key: tuple, make: Callable[[], object]):
    """``make()`` once per job, profile, device and ``key``; later calls return the first result."""
    cache = job_cache(ctx)
    key = (ctx.profile.name, str(ctx.device), *key)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def is_conditional(ctx: MetricContext) -> bool:
    return Capability.CONDITIONAL in ctx.model_spec.capabilities and bool(ctx.dataset.spec.num_classes)


def sampling_call(ctx: MetricContext, max_batch: int) -> Callable[[int], Callable[[], object]]:
    """``call_for(b)``: a no-argument callable drawing b samples (labels drawn once, for conditional
    models), so the timed loop holds nothing but the call."""
    gen = ctx.generator(offset=SAMPLING_SEED_OFFSET)
    labels = None
    if is_conditional(ctx):
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
    timed region of :func:`harness.timing.time_within` (the batch ramp times its first call at a size with it)."""
    device = ctx.model.device
    labelled = is_conditional(ctx) and ctx.dataset.test.y is not None
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
