"""A generator function: samples streamed in batches into the sample metrics, never written to disk.
Here a sampler of the 8gaussians mixture with its own seeded generator (the same batches every call)."""

import math

import torch


def mixture_batches(spec, batch=500, seed=0):
    generator = torch.Generator().manual_seed(seed)
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 4 / 1.414 * torch.stack([angles.cos(), angles.sin()], dim=1)
    while True:
        which = torch.randint(8, (batch,), generator=generator)
        yield centres[which] + 0.5 / 1.414 * torch.randn(batch, 2, generator=generator, dtype=torch.float64)
