"""Glow: actnorm, an invertible 1x1 convolution in LU form and an affine coupling per step.

Glow (Kingma & Dhariwal, 2018): steps of actnorm (data-dependent initialisation on the first training
batch), an invertible 1x1 convolution in LU form (W = P L (U + diag(sign(s) exp(log|s|)))), and an
affine coupling with scale sigmoid(. + 2). On images: multi-scale (squeeze, K steps, split). On vectors
the "1x1 convolution" is the same LU-parametrised linear map over the features."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness_plugins.models.flows.layers import Chain, Flow, MultiScale, sum_per_example
from harness_plugins.models.flows.networks import conv_net, mlp


class ActNorm(Flow):
    """Per-channel (per-feature) affine z = (x + b) * exp(log_s). When ``init_pending`` is set, the
    next forward pass first sets b, log_s so that its input gets zero mean and unit variance."""

    def __init__(self, channels: int, image: bool):
        super().__init__()
        shape = (1, channels, 1, 1) if image else (1, channels)
        self.bias = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.init_pending = False

    def forward(self, x):
        if self.init_pending:
            dims = [0, 2, 3] if x.dim() == 4 else [0]
            with torch.no_grad():
                self.bias.copy_(-x.mean(dims, keepdim=True))
                self.log_scale.copy_(-torch.log(x.std(dims, keepdim=True, unbiased=False) + 1e-6))
            self.init_pending = False
        pixels = x[0, 0].numel() if x.dim() == 4 else 1
        z = (x + self.bias) * torch.exp(self.log_scale)
        return z, self.log_scale.sum() * pixels * x.new_ones(x.shape[0])

    def inverse(self, z):
        return z * torch.exp(-self.log_scale) - self.bias


def data_dependent_init(flow: Flow, x: torch.Tensor) -> None:
    """Initialise every :class:`ActNorm` in ``flow`` from one forward pass of ``x``."""
    actnorms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    for m in actnorms:
        m.init_pending = True
    with torch.no_grad():
        flow(x)
    for m in actnorms:
        m.init_pending = False


class InvertibleLinearLU(Flow):
    """z = W x over channels (an invertible 1x1 convolution for images, a linear map for vectors),
    W = P L (U + diag(sign(s) exp(log|s|))), log|det| = pixels * sum(log|s|). P is fixed."""

    def __init__(self, channels: int):
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels))[0]
        permutation, lower, upper = torch.linalg.lu(rotation)
        s = torch.diagonal(upper)
        self.register_buffer("permutation", permutation)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    @staticmethod
    def _mix(weight, x):
        return torch.einsum("ij,njhw->nihw", weight, x) if x.dim() == 4 else x @ weight.T

    def forward(self, x):
        pixels = x[0, 0].numel() if x.dim() == 4 else 1
        return self._mix(self.weight(), x), self.log_s.sum() * pixels * x.new_ones(x.shape[0])

    def inverse(self, z):
        return self._mix(torch.linalg.inv(self.weight().double()).to(z.dtype), z)


class AffineHalfCoupling(Flow):
    """Glow coupling: x = (x_a, x_b) along channels; (t, raw) = NN(x_a);
    z_b = (x_b + t) * sigmoid(raw + 2); z_a = x_a."""

    def __init__(self, channels: int, make_net: Callable[[int, int], nn.Module]):
        super().__init__()
        self.split = channels // 2
        self.net = make_net(self.split, 2 * (channels - self.split))

    def _shift_log_scale(self, x_a):
        shift, raw = self.net(x_a).chunk(2, 1)
        return shift, F.logsigmoid(raw + 2.0)

    def forward(self, x):
        x_a, x_b = x[:, : self.split], x[:, self.split:]
        shift, log_scale = self._shift_log_scale(x_a)
        return torch.cat([x_a, (x_b + shift) * torch.exp(log_scale)], 1), sum_per_example(log_scale)

    def inverse(self, z):
        z_a, z_b = z[:, : self.split], z[:, self.split:]
        shift, log_scale = self._shift_log_scale(z_a)
        # exp(-log_scale) overflows to inf for log_scale < -88; the result is clamped by Chain anyway.
        return torch.cat([z_a, z_b * torch.exp(-log_scale.clamp(min=-30.0)) - shift], 1)


def glow_step(channels: int, image: bool, make_net) -> Chain:
    return Chain([ActNorm(channels, image), InvertibleLinearLU(channels), AffineHalfCoupling(channels, make_net)])



def build_glow(shape, hp) -> list:
    k = int(hp["steps_per_scale"])
    if len(shape) == 1:
        def make_mlp(d_in, d_out):
            return mlp(d_in, d_out, int(hp["hidden"]), int(hp["depth"]))
        return [glow_step(shape[0], False, make_mlp) for _ in range(k)]

    def make_conv(c_in, c_out):
        return conv_net(c_in, c_out, int(hp["channels"]))

    def scale(c, h, w, remaining):
        steps = Chain([glow_step(4 * c, True, make_conv) for _ in range(k)])
        can_go_on = remaining > 1 and (h // 2) % 2 == 0 and (w // 2) % 2 == 0
        inner = scale(2 * c, h // 2, w // 2, remaining - 1) if can_go_on else None
        return MultiScale(Chain([]), steps, inner)

    c, h, w = shape
    if h % 2 or w % 2:
        raise ValueError(f"glow needs even image sides to squeeze, got {h}x{w}")
    return [scale(c, h, w, int(hp["scales"]))]
