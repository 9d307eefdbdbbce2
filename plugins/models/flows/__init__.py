"""Normalising flows: planar, NICE, RealNVP, Glow and MAF, trained by maximum likelihood.

A flow is an invertible map f from data x to a latent z of the same shape with z ~ N(0, I); by the
change of variables

    log p(x) = log N(f(x); 0, I) + log |det df/dx|.

Every layer below implements ``forward(x) -> (z, log|det dz/dx|)`` (the normalising direction, one
log-determinant per example) and ``inverse(z) -> x`` (the generative direction, used to sample); a
model is a :class:`Chain` of layers, so every Jacobian term of every layer enters the likelihood.

Data. Continuous data first pass a fixed :class:`Standardize` layer (train mean and standard
deviation; its log-det is part of the flow). Discrete and binary data are dequantised to [0, 1) by
:class:`harness.data.ContinuousView` and pass a :class:`LogitTransform`
y -> logit(a + (1 - 2a) y), log-det included; the likelihood is then the dequantisation lower bound
(kind ``bound``) and the bits/dim the core reports is an upper bound on the discrete NLL. Samples are
quantised back to levels.

The five models
- ``planar`` (Rezende & Mohamed, 2015). Generative layers x = z + u_hat tanh(w.z + b) with
  u_hat = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a) (plus a 1e-4 margin that survives
  float32 rounding), so that w.u_hat > -1 and each layer is invertible. There is no closed-form
  inverse, so the normalising direction solves each layer numerically: a = w.z + b is the unique
  root of F(a) = a + (w.u_hat) tanh(a) - (w.x + b) (monotone in a; bracketed and solved by
  safeguarded Newton in float64 to |F| < 1e-10), then z = x - u_hat tanh(a). Gradients flow through
  one Newton correction from the detached root, a = a* - F(a*) / F'(a*), whose value is a* and whose
  derivatives are exactly the implicit-function ones, so dz/dx is the inverse of the layer's
  Jacobian and maximum-likelihood training gets exact gradients. The log-density is the change of
  variables of the generative direction: log p(x) = log N(z) - sum_k log(1 + w_k.u_hat_k tanh'(a_k)).
  Low-dimensional data only.
- ``nice`` (Dinh, Krueger & Bengio, 2014). Additive couplings on alternating halves of the (flattened)
  dimensions with MLP shift networks, then a diagonal scaling layer. A standard normal base replaces
  the paper's logistic prior.
- ``realnvp`` (Dinh, Sohl-Dickstein & Bengio, 2017). Affine couplings, scale = c * tanh(.). On vectors:
  alternating masks with MLPs. On images: multi-scale; each scale has checkerboard couplings, a squeeze,
  channel couplings, then half the channels are factored out; the last scale has checkerboard couplings.
- ``glow`` (Kingma & Dhariwal, 2018). Steps of actnorm (data-dependent initialisation on the first
  training batch), an invertible 1x1 convolution in LU form (W = P L (U + diag(sign(s) exp(log|s|)))),
  and an affine coupling with scale sigmoid(. + 2). On images: multi-scale (squeeze, K steps, split).
  On vectors the "1x1 convolution" is the same LU-parametrised linear map over the features.
- ``maf`` (Papamakarios, Pavlakou & Murray, 2017). Affine autoregressive layers whose shift and
  log-scale come from a MADE (Germain et al., 2015) network, with the variable order reversed between
  layers. The density takes one pass per layer; sampling takes one pass per dimension per layer.
  Batch normalisation between layers (used in the paper) is left out.

Factored-out latents use the standard normal (Glow's learned split prior is left out).
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import Capability, DataKind, FitContext, LikelihoodKind, Model, ModelSpec, Split, hookimpl
from harness.data import ContinuousView

LOG_2PI = math.log(2 * math.pi)


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


# ============================================================================ networks


def zero_init(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` hidden ReLU layers; the output layer starts at zero (the coupling starts as identity)."""
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(zero_init(nn.Linear(d, d_out)))
    return nn.Sequential(*layers)


def conv_net(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    """3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv (the coupling network of Glow)."""
    return nn.Sequential(
        nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
        zero_init(nn.Conv2d(hidden, c_out, 3, padding=1)),
    )


# ============================================================================ planar


def solve_planar_preactivation(c: float, y: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """The root a of a + c tanh(a) = y for each entry of y (c > -1: the left side is increasing).

    |tanh| < 1 brackets the root in [y - |c|, y + |c|]; Newton steps that leave the bracket are
    replaced by bisection, so it always converges. Runs in float64 numpy (no autograd is needed
    here, and numpy's per-call overhead is a fraction of torch's on these small vectors).
    """
    lo, hi = y - abs(c), y + abs(c)
    a = y.copy()
    for _ in range(max_iter):
        t = np.tanh(a)
        residual = a + c * t - y
        if np.abs(residual).max(initial=0.0) < tol:
            break
        lo = np.where(residual < 0, a, lo)
        hi = np.where(residual > 0, a, hi)
        newton = a - residual / (1 + c * (1 - t * t))
        a = np.where((newton > lo) & (newton < hi), newton, 0.5 * (lo + hi))
    return a


class PlanarFlow(Flow):
    """K planar layers. Layer k's generative map is g_k(z) = z + u_hat_k tanh(w_k.z + b_k); the
    generative direction is x = g_1(g_2(...g_K(z))), so ``forward`` (x -> z) inverts g_1 first.

    The parameters of all layers are stacked into (K, D) tensors so the constraint and the optimiser
    work on three tensors rather than 3K.
    """

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(layers, dim) / math.sqrt(dim))
        self.u = nn.Parameter(torch.randn(layers, dim) * 0.1)
        self.b = nn.Parameter(torch.zeros(layers))

    # m(a) = -1 + softplus(a) rounds to exactly -1 in float32 once a < -17, which would make a layer
    # singular; the margin keeps w.u_hat >= -1 + 1e-4 in any precision.
    MARGIN = 1e-4

    def u_hat(self) -> torch.Tensor:
        """u + (m(w.u) - w.u) w / |w|^2 with m(a) = -1 + margin + softplus(a), so w.u_hat > -1."""
        wu = (self.w * self.u).sum(1, keepdim=True)
        m = -1 + self.MARGIN + F.softplus(wu)
        return self.u + (m - wu) * self.w / (self.w * self.w).sum(1, keepdim=True)

    def inverse(self, z):
        u_hat = self.u_hat()
        for k in reversed(range(self.w.shape[0])):
            z = z + u_hat[k] * torch.tanh(z @ self.w[k] + self.b[k])[:, None]
        return z

    def forward(self, x):
        u_hat = self.u_hat()
        c_all = (self.w * u_hat).sum(1)  # w.u_hat > -1
        log_det = x.new_zeros(x.shape[0])
        for w, u, b, c in zip(self.w, u_hat, self.b, c_all):
            y = x @ w + b
            with torch.no_grad():
                root_np = solve_planar_preactivation(float(c), y.detach().cpu().double().numpy())
                root = torch.from_numpy(root_np).to(device=x.device, dtype=x.dtype)
                t_root = torch.tanh(root)
                slope = 1 + c * (1 - t_root * t_root)
            # One Newton correction from the detached root: its value is the root and its derivatives
            # (through y and c) are the implicit-function ones, da = (dy - tanh(a) dc) / (1 + c tanh'(a)).
            a = root - (root + c * t_root - y) / slope
            t = torch.tanh(a)
            x = x - u * t[:, None]
            log_det = log_det - torch.log1p(c * (1 - t * t))
        return x, log_det


# ============================================================================ NICE


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


# ============================================================================ RealNVP


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


# ============================================================================ Glow


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


# ============================================================================ MAF


class MaskedLinear(nn.Linear):
    def __init__(self, d_in: int, d_out: int, mask: torch.Tensor):
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder: output i (shift and raw log-scale) depends only on inputs of lower degree.

    ``degrees`` is a permutation of 1..D; hidden units get degrees 1..D-1 in turn; a hidden unit of
    degree k sees inputs of degree <= k; output of degree d sees hidden units of degree < d.
    """

    def __init__(self, degrees: torch.Tensor, hidden: int, depth: int):
        super().__init__()
        dim = len(degrees)
        layers, prev = [], degrees
        for _ in range(depth):
            deg = torch.arange(hidden) % max(dim - 1, 1) + 1
            layers += [MaskedLinear(len(prev), hidden, deg[:, None] >= prev[None, :]), nn.ReLU()]
            prev = deg
        out_mask = (degrees[:, None] > prev[None, :]).repeat(2, 1)
        layers.append(zero_init(MaskedLinear(len(prev), 2 * dim, out_mask)))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).chunk(2, 1)


class MAFLayer(Flow):
    """z_i = (x_i - mu_i(x_<i)) * exp(-alpha_i(x_<i)), alpha soft-clamped to (-5, 5).
    forward: one MADE pass; inverse: D passes, one dimension at a time in degree order."""

    LOG_SCALE_BOUND = 5.0

    def __init__(self, dim: int, hidden: int, depth: int, reverse: bool):
        super().__init__()
        degrees = torch.arange(1, dim + 1)
        if reverse:
            degrees = degrees.flip(0)
        self.register_buffer("order", torch.argsort(degrees))
        self.made = MADE(degrees, hidden, depth)

    def _shift_log_scale(self, x):
        shift, raw = self.made(x)
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


# ============================================================================ architectures
# Each builds the body of a flow (after the Standardize / Logit layer) for an event shape.


def _flat_wrapped(shape, layers) -> list:
    """Flatten an image before vector layers and restore the shape after them."""
    if len(shape) == 1:
        return layers
    dim = math.prod(shape)
    return [Reshape(shape, (dim,)), *layers, Reshape((dim,), shape)]


def _halves(dim: int, parity: int):
    idx = torch.arange(dim)
    return idx[idx % 2 == parity], idx[idx % 2 != parity]


def build_planar(shape, hp) -> list:
    return [PlanarFlow(shape[0], int(hp["layers"]))]


def build_nice(shape, hp) -> list:
    dim = math.prod(shape)
    couplings = [AdditiveCoupling(*_halves(dim, i % 2), int(hp["hidden"]), int(hp["depth"]))
                 for i in range(int(hp["couplings"]))]
    return _flat_wrapped(shape, [*couplings, DiagonalScale(dim)])


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


def build_maf(shape, hp) -> list:
    dim = math.prod(shape)
    layers = [MAFLayer(dim, int(hp["hidden"]), int(hp["depth"]), reverse=bool(i % 2))
              for i in range(int(hp["layers"]))]
    return _flat_wrapped(shape, layers)


# ============================================================================ the model

TRAINING_DEFAULTS = {
    "steps": 1000,  # optimisation steps (fewer if the job's deadline comes first)
    "batch_size": 256,
    "lr": 1e-3,
    "warmup": 50,  # linear learning-rate warm-up, then cosine decay to zero
    "grad_clip": 10.0,  # on the gradient of the NLL in nats per dimension
    "val_every": 250,  # evaluate the validation NLL this often; the best parameters are kept
    "val_examples": 2000,
    "eval_batch": 2048,
    "dequant_draws": 1,  # dequantisation draws averaged in log_likelihood (discrete data)
    "logit_alpha": 0.05,
    "init_batch": 512,  # examples for actnorm's data-dependent initialisation
    "temperature": 1.0,  # scale of the base draws when sampling
}


class FlowModel(Model):
    """A normalising flow trained by maximum likelihood (Adam, warm-up + cosine schedule).

    ``build(event_shape, hparams)`` returns the layers of the flow body; the model prepends the
    preprocessing layer (Standardize or LogitTransform) and evaluates log N(f(x)) + log|det|.
    Hyperparameters under the key ``"image"`` (a dict) override the others on image datasets, so one
    profile can give cheap 2-D jobs large batches and image jobs small ones.
    The parameters are (re)initialised at the start of ``fit`` from a seed drawn from
    ``ctx.generator``, so a job is reproducible from its seed; before ``fit`` the model holds a
    seed-0 initialisation (usable, e.g. for tests).
    """

    def __init__(self, spec, hparams, build):
        self.spec = spec
        self.view = ContinuousView(spec)
        hparams = {**TRAINING_DEFAULTS, **hparams}
        image_overrides = hparams.pop("image", None) or {}
        self.hparams = {**hparams, **image_overrides} if spec.is_image else hparams
        self.build = build
        self.shape = tuple(spec.event_shape)
        self.flow = self._make_flow(seed=0, train_x=None)

    # ------------------------------------------------------------------ construction
    def _preprocess(self, train_x) -> Flow:
        if self.view.dequantized:
            return LogitTransform(self.hparams["logit_alpha"])
        if train_x is None:
            return Standardize(torch.zeros(self.shape), torch.ones(self.shape))
        x = train_x.double()
        return Standardize(x.mean(0), x.std(0).clamp_min(1e-6))

    def _make_flow(self, seed: int, train_x) -> Chain:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            flow = Chain([self._preprocess(train_x), *self.build(self.shape, self.hparams)])
        return flow.to(self.device)

    # ------------------------------------------------------------------ density
    def log_density(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) in model space (dequantised [0,1) values for discrete data), differentiable."""
        z, log_det = self.flow(y)
        return standard_normal_log_prob(z) + log_det

    def _log_density_batched(self, y: torch.Tensor) -> torch.Tensor:
        out = []
        self.flow.eval()
        with torch.no_grad():
            for chunk in torch.split(y, int(self.hparams["eval_batch"])):
                out.append(self.log_density(chunk.to(self.device)).double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def log_likelihood(self, x, labels=None):
        gen = torch.Generator().manual_seed(12345)
        return self.view.log_likelihood(self._log_density_batched, x, gen,
                                        draws=int(self.hparams["dequant_draws"]))

    # ------------------------------------------------------------------ training
    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        hp = self.hparams
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        self.flow = self._make_flow(seed, None if self.view.dequantized else train.x)
        dim = math.prod(self.shape)
        n = len(train)

        def batch(size):
            idx = torch.randint(0, n, (size,), generator=ctx.generator)
            return self.view.model_input(train.x[idx], ctx.generator).to(self.device)

        self.flow.train()
        data_dependent_init(self.flow, batch(min(int(hp["init_batch"]), n)))
        steps, warmup = int(hp["steps"]), max(int(hp["warmup"]), 1)
        params = [p for p in self.flow.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=float(hp["lr"]))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
        val_x = val.x[: int(hp["val_examples"])]
        best_nll, best_state, val_nll = math.inf, None, None
        for step in range(steps):
            if ctx.should_stop():
                break
            x = batch(int(hp["batch_size"]))
            loss = -self.log_density(x).mean()
            val_nll = None  # the parameters are about to change
            if not torch.isfinite(loss):
                break  # diverged: fall back to the best validated parameters below
            optimizer.zero_grad(set_to_none=True)
            (loss / dim).backward()
            torch.nn.utils.clip_grad_norm_(params, float(hp["grad_clip"]))
            optimizer.step()
            schedule.step()
            ctx.step(len(x), loss=loss.item())
            if len(val_x) and (step + 1) % int(hp["val_every"]) == 0:
                val_nll = self._mean_nll(val_x)
                if val_nll < best_nll:
                    best_nll, best_state = val_nll, copy.deepcopy(self.flow.state_dict())
                self.flow.train()
        if best_state is not None:
            final_nll = val_nll if val_nll is not None else self._mean_nll(val_x)
            if not final_nll <= best_nll:  # also true when the final parameters give NaN
                self.flow.load_state_dict(best_state)
        self.flow.eval()

    def _mean_nll(self, x: torch.Tensor) -> float:
        return -float(self.log_likelihood(x).values.double().mean())

    # ------------------------------------------------------------------ sampling
    def sample(self, n, generator, labels=None):
        z = torch.randn((n, *self.shape), generator=generator) * float(self.hparams["temperature"])
        self.flow.eval()
        out = []
        with torch.no_grad():
            for chunk in torch.split(z, int(self.hparams["eval_batch"])):
                out.append(self.flow.inverse(chunk.to(self.device)).float().cpu())
        y = torch.cat(out) if out else torch.zeros((0, *self.shape))
        return self.view.to_data(y)


# ============================================================================ registration

TOYS = ["8gaussians", "checkerboard"]
DEFAULT_DATASETS_IMAGES = {"smoke": ["8gaussians", "digits"], "quick": ["8gaussians", "digits"],
                           "full": [*TOYS, "moons", "2spirals", "digits", "mnist5k"]}


def _planar_accepts(spec) -> Optional[str]:
    if spec.is_image or len(spec.event_shape) != 1 or spec.dim > 16:
        return (f"planar flows have no closed-form inverse and are only run on low-dimensional vectors; "
                f"{spec.name} has shape {spec.event_shape}")
    return None


def _vector_or_image(spec) -> Optional[str]:
    if len(spec.event_shape) not in (1, 3):
        return f"flows here take vectors or (C, H, W) images; {spec.name} has shape {spec.event_shape}"
    return None


def _glow_accepts(spec) -> Optional[str]:
    reason = _vector_or_image(spec)
    if reason is None and spec.is_image and (spec.event_shape[1] % 2 or spec.event_shape[2] % 2):
        reason = f"glow squeezes 2x2 blocks and needs even image sides; {spec.name} is {spec.event_shape}"
    if reason is None and len(spec.event_shape) == 1 and spec.dim < 2:
        reason = "glow couplings need at least two dimensions"
    return reason


def _at_least_2d(accepts):
    def check(spec):
        reason = accepts(spec)
        if reason is None and spec.dim < 2:
            reason = f"coupling and autoregressive flows need at least two dimensions; {spec.name} has one"
        return reason
    return check


def _factory(build):
    def make(spec, hparams):
        return FlowModel(spec, hparams, build)
    return make


ALL_KINDS = [DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY]

# Hyperparameters per profile. 2-D jobs are dominated by per-operation overhead, so they take large
# batches and many cheap steps; image jobs (under "image") take small batches. Quick budgets aim at
# about 10 s of single-thread training per dataset; smoke at about a second.
MODELS = [
    dict(
        name="planar", build=build_planar, accepts=_planar_accepts,
        defaults={
            "smoke": {"layers": 8, "steps": 150, "lr": 1e-2, "val_every": 150},
            "quick": {"layers": 16, "steps": 1000, "lr": 1e-2},
            "full": {"layers": 64, "steps": 20000, "lr": 3e-3, "batch_size": 512, "val_every": 1000},
        },
        default_datasets={"smoke": ["8gaussians"], "quick": TOYS, "full": [*TOYS, "moons", "2spirals"]},
        description="Planar flow (Rezende & Mohamed 2015), density by numerical inversion of each layer.",
    ),
    dict(
        name="nice", build=build_nice, accepts=_at_least_2d(_vector_or_image),
        defaults={
            "smoke": {"couplings": 4, "hidden": 32, "depth": 2, "steps": 150, "lr": 3e-3, "val_every": 150,
                      "image": {"hidden": 64, "steps": 60, "batch_size": 32, "lr": 1e-2}},
            "quick": {"couplings": 8, "hidden": 64, "depth": 2, "steps": 1200, "lr": 3e-3,
                      "image": {"couplings": 4, "hidden": 256, "depth": 3, "steps": 900, "batch_size": 64,
                                "lr": 1e-3}},
            "full": {"couplings": 8, "hidden": 256, "depth": 3, "steps": 20000, "lr": 1e-3, "val_every": 1000,
                     "image": {"couplings": 4, "hidden": 1000, "depth": 5, "steps": 30000, "batch_size": 128}},
        },
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="NICE (Dinh et al. 2014): additive couplings and a diagonal scaling; Gaussian base.",
    ),
    dict(
        name="realnvp", build=build_realnvp, accepts=_at_least_2d(_vector_or_image),
        defaults={
            "smoke": {"couplings": 4, "hidden": 32, "depth": 2, "steps": 150, "lr": 1e-2, "val_every": 150,
                      "image": {"couplings": 2, "channels": 8, "scales": 2, "steps": 60, "batch_size": 32,
                                "lr": 1e-2}},
            "quick": {"couplings": 6, "hidden": 64, "depth": 2, "steps": 1200, "lr": 3e-3,
                      "image": {"couplings": 3, "channels": 32, "scales": 2, "steps": 300, "batch_size": 64,
                                "lr": 2e-3}},
            "full": {"couplings": 8, "hidden": 256, "depth": 3, "steps": 20000, "lr": 1e-3, "val_every": 1000,
                     "image": {"couplings": 3, "channels": 128, "scales": 3, "steps": 30000, "batch_size": 64}},
        },
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="RealNVP (Dinh et al. 2017): affine couplings; multi-scale with squeeze on images.",
    ),
    dict(
        name="glow", build=build_glow, accepts=_glow_accepts,
        defaults={
            "smoke": {"steps_per_scale": 3, "hidden": 32, "depth": 2, "steps": 150, "lr": 1e-2, "val_every": 150,
                      "image": {"steps_per_scale": 2, "channels": 8, "scales": 2, "steps": 60, "batch_size": 32,
                                "lr": 1e-2}},
            "quick": {"steps_per_scale": 6, "hidden": 64, "depth": 2, "steps": 1000, "lr": 3e-3,
                      "image": {"steps_per_scale": 4, "channels": 32, "scales": 2, "steps": 350, "batch_size": 64,
                                "lr": 2e-3}},
            "full": {"steps_per_scale": 10, "hidden": 256, "depth": 3, "steps": 20000, "lr": 1e-3,
                     "val_every": 1000,
                     "image": {"steps_per_scale": 16, "channels": 256, "scales": 3, "steps": 30000,
                               "batch_size": 64}},
        },
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="Glow (Kingma & Dhariwal 2018): actnorm, LU 1x1 convolution, affine coupling; multi-scale.",
    ),
    dict(
        name="maf", build=build_maf, accepts=_at_least_2d(_vector_or_image),
        defaults={
            "smoke": {"layers": 4, "hidden": 32, "depth": 2, "steps": 150, "lr": 1e-2, "val_every": 150,
                      "image": {"hidden": 64, "steps": 60, "batch_size": 32, "lr": 1e-2}},
            "quick": {"layers": 6, "hidden": 64, "depth": 2, "steps": 1200, "lr": 3e-3,
                      "image": {"layers": 5, "hidden": 256, "steps": 800, "batch_size": 64, "lr": 1e-3}},
            "full": {"layers": 10, "hidden": 256, "depth": 2, "steps": 20000, "lr": 1e-3, "val_every": 1000,
                     "image": {"layers": 10, "hidden": 1024, "steps": 30000, "batch_size": 128}},
        },
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="MAF (Papamakarios et al. 2017): MADE autoregressive layers with order reversal.",
    ),
]


@hookimpl
def harness_register_models(register):
    for m in MODELS:
        register(ModelSpec(
            name=m["name"],
            family="flow",
            factory=_factory(m["build"]),
            data_kinds=ALL_KINDS,
            capabilities=[Capability.SAMPLE],
            likelihood=LikelihoodKind.EXACT,
            defaults=m["defaults"],
            default_datasets=m["default_datasets"],
            accepts=m["accepts"],
            description=m["description"],
        ))
