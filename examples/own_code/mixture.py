"""A torch.distributions object as a model: the true density of the 8gaussians toy, an equal mixture of 8
isotropic Gaussians on a circle. `python -m harness run --model py:mixture:eight_gaussians` measures it."""

import math

import torch
from torch import distributions as D


def eight_gaussians(spec, radius=4 / 1.414, sd=0.5 / 1.414):
    """spec: the dataset's DatasetSpec (unused here); radius and sd are hyperparameters (--set)."""
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    components = D.Independent(D.Normal(centres, torch.full_like(centres, sd)), 1)
    return D.MixtureSameFamily(D.Categorical(logits=torch.zeros(8, dtype=torch.float64)), components)
