"""The networks inside coupling layers: an MLP for vectors, Glow's convolutional net for images.

The networks inside coupling layers: an MLP for vectors and the 3x3-1x1-3x3 convolutional net of
Glow for images. Both start with a zero output layer, so a coupling starts as the identity."""

from __future__ import annotations

from torch import nn

from harness_plugins.models import _blocks
from harness_plugins.models._blocks import zero_init


def mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` hidden ReLU layers; the output layer starts at zero (the coupling starts as identity)."""
    return _blocks.mlp([d_in] + [hidden] * depth + [d_out], nn.ReLU, zero_output=True)


def conv_net(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    """3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv (the coupling network of Glow)."""
    return nn.Sequential(
        nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
        zero_init(nn.Conv2d(hidden, c_out, 3, padding=1)),
    )

