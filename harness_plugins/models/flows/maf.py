"""MAF: affine autoregressive layers whose shift and log-scale come from a MADE network.

MAF (Papamakarios, Pavlakou & Murray, 2017): affine autoregressive layers whose shift and log-scale
come from a MADE (Germain et al., 2015) network, with the variable order reversed between layers. The
density takes one pass per layer; sampling takes one pass per dimension per layer. Batch normalisation
between layers (used in the paper) is left out."""

from __future__ import annotations

import math

import torch

from harness_plugins.models._blocks import MADE
from harness_plugins.models.flows.layers import Flow, flat_wrapped


class MAFLayer(Flow):
    """z_i = (x_i - mu_i(x_<i)) * exp(-alpha_i(x_<i)), alpha soft-clamped to (-5, 5).
    forward: one MADE pass; inverse: D passes, one dimension at a time in degree order.

    The MADE gives hidden units the degrees 1..D-1 in turn and starts its output at zero, so the
    layer starts as the identity."""

    LOG_SCALE_BOUND = 5.0

    def __init__(self, dim: int, hidden: int, depth: int, reverse: bool):
        super().__init__()
        degrees = torch.arange(1, dim + 1)
        if reverse:
            degrees = degrees.flip(0)
        self.register_buffer("order", torch.argsort(degrees))
        self.made = MADE(degrees, [hidden] * depth, 2, hidden_degrees="cyclic", zero_output=True)

    def _shift_log_scale(self, x):
        out = self.made(x)
        shift, raw = out[..., 0], out[..., 1]
        return shift, self.LOG_SCALE_BOUND * torch.tanh(raw / self.LOG_SCALE_BOUND)

    def forward(self, x):
        shift, log_scale = self._shift_log_scale(x)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(1)

    def inverse(self, z):
        x = torch.zeros_like(z)
        for i in self.order.tolist():
            shift, log_scale = self._shift_log_scale(x)
            column = z[:, i:i + 1] * torch.exp(log_scale[:, i:i + 1]) + shift[:, i:i + 1]
            x = torch.cat([x[:, :i], column, x[:, i + 1:]], 1)
        return x


def build_maf(shape, hp) -> list:
    dim = math.prod(shape)
    layers = [MAFLayer(dim, int(hp["hidden"]), int(hp["depth"]), reverse=bool(i % 2))
              for i in range(int(hp["layers"]))]
    return flat_wrapped(shape, layers)
