"""PixelCNN: masked convolutions over images in raster order.

A type-A convolution, then residual blocks of type-B convolutions (van den Oord et al., "Pixel
Recurrent Neural Networks", ICML 2016)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness import Hyperparameters
from harness_plugins.models.autoregressive.model import (TRAINING, TRAINING_DOCS, AutoregressiveModel,
                                                         from_raster_sequence)


def pixelcnn_mask(in_ch: int, out_ch: int, kernel: int, mask_type: str, image_channels: int) -> torch.Tensor:
    """Mask (out, in, k, k) of van den Oord et al. 2016: pixels above and to the left of the
    centre are visible; at the centre, feature channels are split into ``image_channels`` groups
    (R, G, B) and group g sees groups < g (type A, first layer) or <= g (type B, later layers)."""
    c = kernel // 2
    mask = torch.zeros(out_ch, in_ch, kernel, kernel)
    mask[:, :, :c, :] = 1
    mask[:, :, c, :c] = 1
    g_in = torch.arange(in_ch) * image_channels // in_ch
    g_out = torch.arange(out_ch) * image_channels // out_ch
    centre = g_out[:, None] > g_in[None, :] if mask_type == "A" else g_out[:, None] >= g_in[None, :]
    mask[:, :, c, c] = centre.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, mask_type: str, image_channels: int):
        super().__init__(in_ch, out_ch, kernel, padding=kernel // 2)
        self.register_buffer("mask", pixelcnn_mask(in_ch, out_ch, kernel, mask_type, image_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNNResidualBlock(nn.Module):
    """ReLU, 1x1 (2h -> h), ReLU, 3x3 masked B (h -> h), ReLU, 1x1 (h -> 2h), plus the input."""

    def __init__(self, channels: int, image_channels: int, kernel: int = 3):
        super().__init__()
        half = max(channels // 2, image_channels)
        self.body = nn.Sequential(
            nn.ReLU(), MaskedConv2d(channels, half, 1, "B", image_channels),
            nn.ReLU(), MaskedConv2d(half, half, kernel, "B", image_channels),
            nn.ReLU(), MaskedConv2d(half, channels, 1, "B", image_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PixelCNNNetwork(nn.Module):
    """Masked convolutions: a type-A k x k first layer, residual blocks of type-B convolutions,
    and two 1x1 type-B output layers giving P parameters per sub-pixel."""

    def __init__(self, event_shape: tuple, n_params: int, channels: int = 64, blocks: int = 4,
                 first_kernel: int = 7, kernel: int = 3, head_channels: Optional[int] = None):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c = self.event_shape[0]
        self.n_params = n_params
        head_channels = head_channels or channels
        # How many rows above a pixel its parameters can see: the first layer's and every block's reach.
        self.rows_above = first_kernel // 2 + blocks * (kernel // 2)
        self.net = nn.Sequential(
            MaskedConv2d(c, channels, first_kernel, "A", c),
            *[PixelCNNResidualBlock(channels, c, kernel) for _ in range(blocks)],
            nn.ReLU(), MaskedConv2d(channels, head_channels, 1, "B", c),
            nn.ReLU(), MaskedConv2d(head_channels, c * n_params, 1, "B", c),
        )

    def _image_params(self, img: torch.Tensor) -> torch.Tensor:
        n, c, rows, width = img.shape
        return self.net(img).reshape(n, c, self.n_params, rows, width)  # (N, C, P, rows, W)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Parameters (N, D, P) of every sequence position."""
        n = h.shape[0]
        out = self._image_params(from_raster_sequence(h, self.event_shape))
        return out.permute(0, 3, 4, 1, 2).reshape(n, -1, self.n_params)

    def params_at(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """Parameters (N, P) of position i, computed on the band of rows it can see: rows below are
        masked out, and rows more than ``rows_above`` above are outside its receptive field, so
        the band gives the same values as the whole image."""
        c, height, width = self.event_shape
        row, col, channel = i // (width * c), (i // c) % width, i % c
        top = max(0, row - self.rows_above)
        img = from_raster_sequence(h, self.event_shape)[:, :, top:row + 1]
        return self._image_params(img)[:, channel, :, row - top, col]


class PixelCNN(AutoregressiveModel):
    """PixelCNN: ``channels``, ``blocks`` (residual), ``first_kernel`` (type-A layer), ``kernel``,
    ``head_channels``."""

    ordering = "raster (rows, columns, channels)"

    def build_network(self) -> nn.Module:
        hp = self.hparams
        return PixelCNNNetwork(self.spec.event_shape, self.head.n_params, int(hp["channels"]), int(hp["blocks"]),
                               int(hp["first_kernel"]), int(hp["kernel"]),
                               None if hp["head_channels"] is None else int(hp["head_channels"]))


PIXELCNN_HYPERPARAMETERS = Hyperparameters(
    defaults={**TRAINING, "channels": 64, "blocks": 4, "first_kernel": 7, "kernel": 3, "head_channels": None},
    docs={**TRAINING_DOCS,
          "channels": "feature channels of the masked convolutions",
          "blocks": "residual blocks of type-B convolutions",
          "first_kernel": "kernel size of the first (type-A) convolution",
          "kernel": "kernel size of the residual blocks' masked convolutions",
          "head_channels": "channels of the 1x1 output layers (None: channels)"},
    profiles={
        "smoke": {"channels": 16, "blocks": 1, "first_kernel": 5, "steps": 100, "batch_size": 64, "lr": 1e-2,
                  "eval_every": 25},
        "quick": {"channels": 48, "blocks": 3, "first_kernel": 5, "steps": 700, "batch_size": 64, "lr": 5e-3,
                  "eval_every": 50},
        "full": {"channels": 128, "blocks": 8, "first_kernel": 7, "steps": 30000, "batch_size": 64, "lr": 1e-3,
                 "eval_every": 500},
    },
)
