"""The diffusion family's networks: f(x, t) shaped like x, for times t in [0, 1].

The networks of the diffusion family: f(x, t) with the output shaped like x (noise, score or
velocity), for times t in [0, 1].

- :class:`TimeMLP` for vectors: [x, embedding(t)] through an MLP with SiLU activations.
- :class:`UNet` for (C, H, W) images (8x8, 28x28, 32x32, ...): a small U-Net in the manner of Ho et al.
  (2020) -- residual blocks with group normalisation and the time embedding added, stride-2
  downsampling while both sides are even and above 4 (``_blocks.halvings``: 8 -> 4, 28 -> 14 -> 7,
  32 -> 16 -> 8 -> 4), nearest-neighbour upsampling, skip connections by concatenation; no attention.

Both start with a zero output layer, so an untrained network predicts zeros.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness_plugins.models._blocks import halvings, mlp, zero_init

TIME_SCALE = 1000.0  # t in [0, 1] is embedded as 1000 t, the range of the sinusoidal embedding of Ho et al.


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (N, dim) of times t (N,) in [0, 1] (Vaswani et al. 2017; Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (TIME_SCALE * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimeMLP(nn.Module):
    """f(x, t) for vectors x (N, D): an MLP on the concatenation of x and a sinusoidal embedding of t."""

    def __init__(self, dim: int, hidden: int, depth: int, time_dim: int):
        super().__init__()
        self.time_dim = int(time_dim)
        self.net = mlp([dim + self.time_dim, *[hidden] * depth, dim], activation=nn.SiLU, zero_output=True)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, timestep_embedding(t, self.time_dim).to(x.dtype)], dim=1))


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> 3x3 conv, plus the projected time embedding, GroupNorm -> SiLU -> 3x3 conv;
    a 1x1 convolution on the skip path when the channel count changes."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    """f(x, t) for images x (N, C, H, W).

    ``channels`` at the top level, doubled once below it (``channels * (1, 2, 2, ...)``); one residual
    block per level on the way down, two on the way up (one reading the skip), one in the middle.
    """

    def __init__(self, shape: tuple, channels: int, time_dim: int):
        super().__init__()
        c_img, height, width = shape
        levels, _, _ = halvings(height, width)
        widths = [channels * (1 if i == 0 else 2) for i in range(levels + 1)]
        emb_dim = 4 * channels
        self.time_dim = int(time_dim)
        self.embed = nn.Sequential(nn.Linear(self.time_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(c_img, channels, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = channels
        for i, w in enumerate(widths):
            self.down.append(ResBlock(c, w, emb_dim))
            c = w
            if i < levels:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = ResBlock(c, c, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels + 1)):
            w = widths[i]
            self.up.append(ResBlock(c + w, w, emb_dim))
            c = w
            if i > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                   nn.Conv2d(c, widths[i - 1], 3, padding=1)))
                c = widths[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), zero_init(nn.Conv2d(c, c_img, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(timestep_embedding(t, self.time_dim).to(x.dtype))
        h = self.inp(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, emb)
        for j, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.upsample):
                h = self.upsample[j](h)
        return self.out(h)


class Flattened(nn.Module):
    """A vector network applied to images: flatten, apply, restore the shape."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1), t).reshape(x.shape)


def build_network(shape: tuple, hparams: dict) -> nn.Module:
    """``hparams["network"]``: ``unet`` (images only), ``mlp`` (a :class:`TimeMLP`; images are flattened),
    or ``auto``: a :class:`UNet` for (C, H, W) images, a :class:`TimeMLP` for vectors."""
    kind = hparams["network"]
    if kind == "auto":
        kind = "unet" if len(shape) == 3 else "mlp"
    if kind == "unet":
        if len(shape) != 3:
            raise ValueError(f"the U-Net takes (C, H, W) images, not shape {tuple(shape)}")
        return UNet(tuple(shape), int(hparams["channels"]), int(hparams["time_dim"]))
    mlp_net = TimeMLP(math.prod(shape), int(hparams["hidden"]), int(hparams["depth"]), int(hparams["time_dim"]))
    return Flattened(mlp_net) if len(shape) != 1 else mlp_net
