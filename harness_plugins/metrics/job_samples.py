"""A job's model samples: their count per profile and the one draw every sample metric shares.

:data:`SAMPLE_COUNT` is the sample count the sample metrics declare (``MetricSpec.sizes``): 500 at
smoke, 2000 at quick, 10000 at full. :func:`counted` makes a metric's compute step from a measuring
function ``measure(ctx, n)`` that takes that count.

The fidelity metrics (fid, kid, precision, recall, density, coverage), through their features, and the
truth-based score (``sample_xent_gap``), through the true log-density, read the same draw:
``job_samples(ctx, n)`` draws ``n`` samples with the job's generator ``ctx.generator(SAMPLE_OFFSET)``
in batches of the profile's ``sample_batch``, checks their shape and finiteness, and keeps only the
latest job's in ``ctx.run_cache`` (keyed by model, dataset and its provenance, seed, n and the model
object), so a job's metrics see the very same samples and no job holds on to another's.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Callable

import torch

from harness import MetricContext
from harness.contracts import ProfileSizes

# Model samples (and reference examples) per job: the sample count in every sample metric's identity.
SAMPLE_COUNT = ProfileSizes({"smoke": {"samples": 500}, "quick": {"samples": 2000}, "full": {"samples": 10000}})
SAMPLE_OFFSET = 4242  # ctx.generator(offset) for the shared model samples
CACHE_SLOT = "metrics:job_samples"
# Sample draws made here (one per job and sample count); tests check that metrics share them.
DRAWS: Counter = Counter()


def draw_samples(model, n: int, generator: torch.Generator, event_shape, batch_size: int = 1000) -> torch.Tensor:
    """``n`` samples from ``model`` in chunks of ``batch_size``, on the CPU; checked for shape and finiteness."""
    chunks, drawn = [], 0
    with torch.no_grad():
        while drawn < n:
            size = min(batch_size, n - drawn)
            chunk = model.sample(size, generator).detach().cpu()
            if tuple(chunk.shape) != (size, *event_shape):
                raise ValueError(f"sample({size}) returned shape {tuple(chunk.shape)}, expected {(size, *event_shape)}")
            chunks.append(chunk)
            drawn += size
    samples = torch.cat(chunks)
    if not torch.isfinite(samples).all():
        raise ValueError("the model's samples contain NaN or inf")
    return samples


def job_key(ctx: MetricContext, n: int) -> tuple:
    return (ctx.model_spec.name, ctx.dataset.name, ctx.dataset.provenance, ctx.seed, int(n), id(ctx.model))


def job_samples(ctx: MetricContext, n: int) -> torch.Tensor:
    """The job's ``n`` model samples (CPU), drawn once and shared by the job's metrics."""
    key = job_key(ctx, n)
    slot = ctx.run_cache.get(CACHE_SLOT)
    if slot is not None and slot[0] == key:
        return slot[1]
    batch = max(1, int(ctx.profile.sample_batch))
    with ctx.timed("samples"):
        samples = draw_samples(ctx.model, n, ctx.generator(SAMPLE_OFFSET), ctx.dataset.spec.event_shape, batch)
    DRAWS["samples"] += 1
    ctx.run_cache[CACHE_SLOT] = (key, samples)
    return samples


def sample_count(ctx: MetricContext) -> int:
    """The sample count :data:`SAMPLE_COUNT` declares for the job's profile."""
    return int(SAMPLE_COUNT.of(ctx.profile)["samples"])


def counted(measure: Callable[[MetricContext, int], list]) -> Callable[[MetricContext], list]:
    """The compute step ``ctx -> measure(ctx, sample_count(ctx))``."""

    @functools.wraps(measure)
    def compute(ctx: MetricContext) -> list:
        return measure(ctx, sample_count(ctx))

    return compute
