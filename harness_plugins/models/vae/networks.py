"""The VAEs' networks: MLP and convolutional encoders and decoders, and standardisation."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from harness_plugins.models._blocks import halvings, mlp


class MLPEncoder(nn.Module):
    """x (flattened) [+ one-hot label] -> (mu, logvar) of q(z | x)."""

    def __init__(self, dim: int, cond: int, hidden: int, depth: int, latent: int):
        super().__init__()
        self.latent = latent
        self.net = mlp([dim + cond] + [hidden] * depth + [2 * latent], nn.SiLU)

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor]):
        h = x.reshape(x.shape[0], -1)
        if cond is not None:
            h = torch.cat([h, cond], 1)
        out = self.net(h)
        return out[:, : self.latent], out[:, self.latent:].clamp(-15, 10)


class MLPDecoder(nn.Module):
    """z [+ one-hot label] -> likelihood parameters (B, P, D)."""

    def __init__(self, dim: int, cond: int, hidden: int, depth: int, latent: int, params: int):
        super().__init__()
        self.dim, self.params = dim, params
        self.net = mlp([latent + cond] + [hidden] * depth + [params * dim], nn.SiLU)

    def forward(self, z: torch.Tensor, cond: Optional[torch.Tensor]):
        h = z if cond is None else torch.cat([z, cond], 1)
        return self.net(h).reshape(z.shape[0], self.params, self.dim)


def _channels(base: int, level: int) -> int:
    return base * 2 ** min(level, 2)


class ConvEncoder(nn.Module):
    """3x3 conv, then stride-2 4x4 convs halving the image (doubling channels, at most 4x), then
    a hidden dense layer (which also receives the one-hot label) and the (mu, logvar) output."""

    def __init__(self, shape: tuple, cond: int, channels: int, hidden: int, latent: int):
        super().__init__()
        c, h, w = shape
        n, h0, w0 = halvings(h, w)
        self.latent = latent
        layers: list[nn.Module] = [nn.Conv2d(c, channels, 3, padding=1), nn.SiLU()]
        for i in range(n):
            layers += [nn.Conv2d(_channels(channels, i), _channels(channels, i + 1), 4, 2, 1), nn.SiLU()]
        self.conv = nn.Sequential(*layers)
        self.dense = mlp([_channels(channels, n) * h0 * w0 + cond, hidden, 2 * latent], nn.SiLU)

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor]):
        h = self.conv(x).flatten(1)
        if cond is not None:
            h = torch.cat([h, cond], 1)
        out = self.dense(h)
        return out[:, : self.latent], out[:, self.latent:].clamp(-15, 10)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: dense layers to the smallest feature map, stride-2
    transposed 4x4 convs doubling it back, and a 3x3 conv to P parameters per pixel."""

    def __init__(self, shape: tuple, cond: int, channels: int, hidden: int, latent: int, params: int):
        super().__init__()
        c, h, w = shape
        n, h0, w0 = halvings(h, w)
        self.shape, self.params = shape, params
        self.top = (_channels(channels, n), h0, w0)
        self.dense = nn.Sequential(mlp([latent + cond, hidden, math.prod(self.top)], nn.SiLU), nn.SiLU())
        layers: list[nn.Module] = []
        for i in reversed(range(n)):
            layers += [nn.ConvTranspose2d(_channels(channels, i + 1), _channels(channels, i), 4, 2, 1), nn.SiLU()]
        layers.append(nn.Conv2d(channels, params * c, 3, padding=1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: Optional[torch.Tensor]):
        h = z if cond is None else torch.cat([z, cond], 1)
        h = self.dense(h).reshape(z.shape[0], *self.top)
        return self.deconv(h).reshape(z.shape[0], self.params, -1)


class Standardizer(nn.Module):
    """x -> (x - shift) / scale per dimension (continuous data); identity until fitted."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> None:
        x = x.reshape(x.shape[0], -1).double()
        self.shift.copy_(x.mean(0).float())
        self.scale.copy_(x.std(0).clamp_min(1e-6).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.shift

    def log_abs_det(self) -> torch.Tensor:
        """log |d(standardised)/dx| summed over dimensions (add it to a standardised density)."""
        return -torch.log(self.scale).sum()

