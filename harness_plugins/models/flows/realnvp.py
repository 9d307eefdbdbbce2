"""RealNVP (Dinh, Sohl-Dickstein & Bengio, 2017): affine couplings, scale = c * tanh(.). On vectors:
alternating masks with MLPs. On images: multi-scale; each scale has checkerboard couplings, a squeeze,
channel couplings, then half the channels are factored out; the last scale has checkerboard couplings."""

from __future__ import annotations

import torch
from torch import nn

from harness_plugins.models.flows.layers import Chain, Flow, MultiScale, sum_per_example
from harness_plugins.models.flows.networks import conv_net, mlp


class MaskedAffineCoupling(Flow):
    """RealNVP coupling: entries where ``mask`` is 1 pass unchanged and condition the others,
    z = x * exp(s) + t with (s, t) = NN(x * mask), s = c * tanh(raw), zero where mask is 1."""

    def __init__(self, mask: torch.Tensor, net: nn.Module):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        scale_shape = (1, mask.shape[0]) if mask.dim() == 1 else (1, net[-1].out_channels // 2, 1, 1)
        self.scale = nn.Parameter(torch.ones(scale_shape))

    def _log_scale_shift(self, x_kept):
        raw, shift = self.net(x_kept).chunk(2, 1)
        free = 1 - self.mask
        return self.scale * torch.tanh(raw) * free, shift * free

    def forward(self, x):
        log_scale, shift = self._log_scale_shift(x * self.mask)
        return x * torch.exp(log_scale) + shift, sum_per_example(log_scale)

    def inverse(self, z):
        log_scale, shift = self._log_scale_shift(z * self.mask)
        return (z - shift) * torch.exp(-log_scale)


def checkerboard_mask(channels: int, height: int, width: int, parity: int) -> torch.Tensor:
    ij = torch.arange(height)[:, None] + torch.arange(width)[None, :]
    return ((ij % 2) == parity).float().expand(channels, height, width)[None].clone()


def channel_mask(channels: int, parity: int) -> torch.Tensor:
    first = (torch.arange(channels) < channels // 2).float()
    return (first if parity == 0 else 1 - first).reshape(1, channels, 1, 1)



def build_realnvp(shape, hp) -> list:
    n = int(hp["couplings"])
    if len(shape) == 1:
        dim = shape[0]
        return [MaskedAffineCoupling((torch.arange(dim) % 2 == i % 2).float(),
                                     mlp(dim, 2 * dim, int(hp["hidden"]), int(hp["depth"])))
                for i in range(n)]
    channels = int(hp["channels"])

    def checker(c, h, w, parity):
        return MaskedAffineCoupling(checkerboard_mask(c, h, w, parity), conv_net(c, 2 * c, channels))

    def scale(c, h, w, remaining):
        if remaining <= 1 or h % 2 or w % 2:
            return Chain([checker(c, h, w, i % 2) for i in range(n + 1)])
        before = Chain([checker(c, h, w, i % 2) for i in range(n)])
        after = Chain([MaskedAffineCoupling(channel_mask(4 * c, i % 2), conv_net(4 * c, 8 * c, channels))
                       for i in range(n)])
        return MultiScale(before, after, scale(2 * c, h // 2, w // 2, remaining - 1))

    return [scale(*shape, int(hp["scales"]))]
