"""Speed metrics: how fast a model samples.

sample_throughput: samples per second at the profile's batch size; one warm-up call, then the
profile's number of timed repeats; the median is reported with its spread in details.
"""

from __future__ import annotations

import torch

from harness import Capability, Measurement, MetricContext, MetricSpec, hookimpl
from harness.timing import time_repeats


def compute_sample_throughput(ctx: MetricContext) -> list:
    batch = ctx.profile.sample_batch
    gen = ctx.generator(offset=17)
    labels = None
    if Capability.CONDITIONAL in ctx.model_spec.capabilities and ctx.dataset.spec.num_classes:
        labels = torch.randint(ctx.dataset.spec.num_classes, (batch,), generator=gen)

    def draw():
        with torch.no_grad():
            return ctx.model.sample(batch, gen, labels=labels)

    timing = time_repeats(draw, ctx.device, warmup=1, repeats=ctx.profile.timing_repeats)
    rate = batch / timing.median
    return [Measurement(
        "sample_throughput", rate, "samples/s", "measured", higher_is_better=True,
        stderr=timing.rate_stderr(batch), n=len(timing.seconds),
        details={"batch_size": batch, "device": str(ctx.device), "seconds": timing.seconds,
                 "p05_rate": batch / timing.quantile(0.95), "p95_rate": batch / timing.quantile(0.05)},
    )]


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(
        name="sample_throughput",
        unit="samples/s",
        higher_is_better=True,
        compute=compute_sample_throughput,
        requires=[Capability.SAMPLE],
        description="Samples per second at the profile's batch size (median of repeats after a warm-up).",
    ))
