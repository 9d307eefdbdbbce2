"""The pieces every flow is made of: the Flow interface, chains, preprocessing, reshaping, multi-scale.

The pieces every flow is made of: the :class:`Flow` interface, :class:`Chain`, the fixed
preprocessing layers (:class:`Standardize`, :class:`LogitTransform`), :class:`Reshape`, the 2x2
squeeze and the multi-scale wrapper, and the standard normal base density.

Every layer implements ``forward(x) -> (z, log|det dz/dx|)`` (the normalising direction, one
log-determinant per example) and ``inverse(z) -> x`` (the generative direction, used to sample).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from harness_plugins.models._blocks import LOG_2PI


def sum_per_example(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example, summed over every non-batch dimension."""
    return sum_per_example(-0.5 * z * z) - 0.5 * LOG_2PI * z[0].numel()


# ============================================================================ generic layers


class Flow(nn.Module):
    """An invertible layer. ``forward(x) -> (z, log|det dz/dx|)``; ``inverse(z) -> x``."""

    def forward(self, x: torch.Tensor):  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


SAMPLE_BOUND = 1e4


class Chain(Flow):
    """Layers applied in order (normalising direction); the inverse applies them in reverse."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, layer_log_det = layer(x)
            log_det = log_det + layer_log_det
        return x, log_det

    def inverse(self, z):
        # Sampling only (densities use the forward direction): far-tail latents can leave float range
        # in a poorly trained flow, and inf * 0 in the next layer becomes NaN. Values are kept within
        # +-SAMPLE_BOUND, far beyond anything data-like (data are standardised or in logit space).
        for layer in reversed(self.layers):
            z = layer.inverse(z).clamp(-SAMPLE_BOUND, SAMPLE_BOUND)
        return z


class Standardize(Flow):
    """Fixed affine map z = (x - mean) / std (statistics of the training data)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float())

    def forward(self, x):
        log_det = -torch.log(self.std).sum() * x.new_ones(x.shape[0])
        return (x - self.mean) / self.std, log_det

    def inverse(self, z):
        return z * self.std + self.mean


class LogitTransform(Flow):
    """Maps [0, 1) to the real line: s = logit(a + (1 - 2a) x), log-det included."""

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x):
        y = self.alpha + (1 - 2 * self.alpha) * x
        s = torch.log(y) - torch.log1p(-y)
        log_det = sum_per_example(math.log(1 - 2 * self.alpha) - torch.log(y) - torch.log1p(-y))
        return s, log_det

    def inverse(self, s):
        return (torch.sigmoid(s) - self.alpha) / (1 - 2 * self.alpha)


class Reshape(Flow):
    """A volume-preserving change of shape, e.g. flattening an image for a vector flow."""

    def __init__(self, in_shape, out_shape):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.out_shape), x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z.reshape(z.shape[0], *self.in_shape)


def squeeze2x2(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 block becomes four channels (a permutation)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze2x2(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


class MultiScale(Flow):
    """One scale of a multi-scale image flow (RealNVP, Glow).

    ``before`` runs at the input resolution, then a squeeze, then ``after``; if ``inner`` is given,
    half of the channels are factored out (they are latents) and ``inner`` transforms the other
    half. The output is unsqueezed back to the input shape, so the whole flow keeps the data shape
    and every latent has the standard normal base.
    """

    def __init__(self, before: Flow, after: Flow, inner: Optional[Flow] = None):
        super().__init__()
        self.before, self.after, self.inner = before, after, inner

    def forward(self, x):
        h, log_det = self.before(x)
        h, log_det_after = self.after(squeeze2x2(h))
        log_det = log_det + log_det_after
        if self.inner is not None:
            half = h.shape[1] // 2
            rest, log_det_inner = self.inner(h[:, half:])
            h = torch.cat([h[:, :half], rest], 1)
            log_det = log_det + log_det_inner
        return unsqueeze2x2(h), log_det

    def inverse(self, z):
        h = squeeze2x2(z)
        if self.inner is not None:
            half = h.shape[1] // 2
            h = torch.cat([h[:, :half], self.inner.inverse(h[:, half:])], 1)
        return self.before.inverse(unsqueeze2x2(self.after.inverse(h)))



def flat_wrapped(shape, layers) -> list:
    """Flatten an image before vector layers and restore the shape after them."""
    if len(shape) == 1:
        return layers
    dim = math.prod(shape)
    return [Reshape(shape, (dim,)), *layers, Reshape((dim,), shape)]
