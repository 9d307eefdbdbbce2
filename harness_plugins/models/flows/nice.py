"""NICE: additive couplings on alternating halves, then a diagonal scaling layer.

NICE (Dinh, Krueger & Bengio, 2014): additive couplings on alternating halves of the (flattened)
dimensions with MLP shift networks, then a diagonal scaling layer. A standard normal base replaces
the paper's logistic prior."""

from __future__ import annotations

import math

import torch
from torch import nn

from harness_plugins.models.flows.layers import Flow, flat_wrapped
from harness_plugins.models.flows.networks import mlp


class AdditiveCoupling(Flow):
    """z[change] = x[change] + m(x[keep]) on flat vectors (unit Jacobian)."""

    def __init__(self, keep: torch.Tensor, change: torch.Tensor, hidden: int, depth: int):
        super().__init__()
        self.register_buffer("keep", keep)
        self.register_buffer("change", change)
        self.net = mlp(len(keep), len(change), hidden, depth)

    def forward(self, x):
        shifted = x[:, self.change] + self.net(x[:, self.keep])
        return x.index_copy(1, self.change, shifted), x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z.index_copy(1, self.change, z[:, self.change] - self.net(z[:, self.keep]))


class DiagonalScale(Flow):
    """z = x * exp(s), NICE's last layer."""

    def __init__(self, dim: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x * torch.exp(self.log_scale), self.log_scale.sum() * x.new_ones(x.shape[0])

    def inverse(self, z):
        return z * torch.exp(-self.log_scale)


def _halves(dim: int, parity: int):
    idx = torch.arange(dim)
    return idx[idx % 2 == parity], idx[idx % 2 != parity]


def build_nice(shape, hp) -> list:
    dim = math.prod(shape)
    couplings = [AdditiveCoupling(*_halves(dim, i % 2), int(hp["hidden"]), int(hp["depth"]))
                 for i in range(int(hp["couplings"]))]
    return flat_wrapped(shape, [*couplings, DiagonalScale(dim)])
