"""Autoregressive models: MADE, PixelCNN and a WaveNet over raster-ordered pixels.

Each model factorises p(x) = prod_i p(x_i | x_<i) over a fixed ordering of the D dimensions, so its
log-likelihood is exact and sampling draws one dimension at a time. All three share:

- a *sequence view* of the data: ``(N, *event_shape)`` -> ``(N, D)`` in the model's ordering;
- a *network* mapping the encoded sequence ``(N, D)`` to per-dimension parameters ``(N, D, P)``,
  where ``params[:, i]`` depends only on ``x[:, :i]`` (the autoregressive property), with
  ``params_at(h, i)`` computing position i alone as cheaply as it can (for sampling);
- an *output head* (the conditional distribution of one dimension given its parameters):
  Bernoulli on binary data, a categorical over the K levels on discrete data (an exact discrete
  likelihood, no dequantisation), a mixture of Gaussians on continuous data (MADE only);
- the training loop (Adam, cosine learning rate, best-on-validation checkpoint; the loop itself is
  ``_blocks.train_keeping_best``) and the evaluation and sequential sampling code.

Models are unconditional: labels are accepted and ignored.

References: Germain et al., "MADE: Masked Autoencoder for Distribution Estimation", ICML 2015;
van den Oord et al., "Pixel Recurrent Neural Networks", ICML 2016 (PixelCNN, masks A and B,
residual blocks); van den Oord et al., "WaveNet", 2016 (gated, dilated causal convolutions).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness import (Capability, DataKind, FitContext, Hyperparameters, LikelihoodKind, LogLikelihood, Model,
                     ModelSpec, Split, hookimpl)
from harness_plugins.models._blocks import LOG_2PI, MADE as MADENetwork, TOYS, seeded, train_keeping_best


# ============================================================================ output heads


class BernoulliHead(nn.Module):
    """p(x_i = 1) = sigmoid(logit): one parameter per dimension; data 0/1."""

    n_params = 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x - 1

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none")

    def sample(self, params: torch.Tensor, index: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(params.shape[0], generator=generator, dtype=torch.float64).to(params.device)
        return (u < torch.sigmoid(params[:, 0].double())).float()


class CategoricalHead(nn.Module):
    """A softmax over the K levels 0..K-1 of one dimension: K parameters per dimension."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = int(levels)
        self.n_params = self.levels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x / (self.levels - 1) - 1

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(params, dim=-1)
        return logp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, params: torch.Tensor, index: int, generator: torch.Generator) -> torch.Tensor:
        return _inverse_cdf(F.softmax(params.double(), dim=-1), generator).float()


class GaussianMixtureHead(nn.Module):
    """A mixture of C Gaussians per dimension (3C parameters: weight logits, means, log-scales).

    The network sees standardised inputs z = (x - mean) / std (statistics of the training split)
    and the mixture lives in z space; the data-space density adds -log std per dimension, so the
    likelihood stays an exact density over x.
    """

    def __init__(self, dim: int, components: int, min_log_scale: float = -7.0):
        super().__init__()
        self.components = int(components)
        self.n_params = 3 * self.components
        self.min_log_scale = float(min_log_scale)
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        # Spread the initial component means so the mixture does not start collapsed.
        self.register_buffer("mean_offset", torch.linspace(-1.5, 1.5, self.components))

    def set_standardisation(self, x: torch.Tensor) -> None:
        self.shift.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def _mixture(self, params: torch.Tensor):
        c = self.components
        log_weights = F.log_softmax(params[..., :c], dim=-1)
        means = params[..., c:2 * c] + self.mean_offset
        log_scales = params[..., 2 * c:].clamp_min(self.min_log_scale)
        return log_weights, means, log_scales

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_weights, means, log_scales = self._mixture(params)
        z = self.encode(x).unsqueeze(-1)
        log_normal = -0.5 * ((z - means) * torch.exp(-log_scales)) ** 2 - log_scales - 0.5 * LOG_2PI
        return torch.logsumexp(log_weights + log_normal, dim=-1) - torch.log(self.scale)

    def sample(self, params: torch.Tensor, index: int, generator: torch.Generator) -> torch.Tensor:
        log_weights, means, log_scales = self._mixture(params.double())
        k = _inverse_cdf(log_weights.exp(), generator)
        mean = means.gather(-1, k[:, None]).squeeze(-1)
        std = log_scales.gather(-1, k[:, None]).squeeze(-1).exp()
        eps = torch.randn(params.shape[0], generator=generator, dtype=torch.float64).to(params.device)
        z = mean + std * eps
        return (self.shift[index] + self.scale[index] * z).float()


def _inverse_cdf(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One category per row of ``probs`` (N, K) by inverting the CDF at a uniform draw."""
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype).to(probs.device)
    cdf = probs.cumsum(-1)
    cdf = cdf / cdf[:, -1:]
    return (cdf <= u).sum(-1).clamp_max(probs.shape[-1] - 1)


def make_head(spec, components: Optional[int] = None) -> nn.Module:
    """The output head for the data kind; ``components``: the mixture size on continuous data."""
    if spec.kind is DataKind.BINARY:
        return BernoulliHead()
    if spec.kind is DataKind.DISCRETE:
        return CategoricalHead(spec.levels)
    if components is None:
        raise ValueError(f"continuous data needs a mixture head; give components ({spec.name})")
    return GaussianMixtureHead(spec.dim, int(components))


# ============================================================================ orderings


def to_raster_sequence(x: torch.Tensor, event_shape: tuple) -> torch.Tensor:
    """(N, *event) -> (N, D). Images (C, H, W) go in raster order over pixels, channels innermost
    (R, G, B of one pixel are consecutive); other shapes are flattened as stored."""
    if len(event_shape) == 3:
        x = x.permute(0, 2, 3, 1)
    return x.reshape(x.shape[0], -1)


def from_raster_sequence(seq: torch.Tensor, event_shape: tuple) -> torch.Tensor:
    if len(event_shape) == 3:
        c, h, w = event_shape
        return seq.reshape(seq.shape[0], h, w, c).permute(0, 3, 1, 2).contiguous()
    return seq.reshape(seq.shape[0], *event_shape)


# ============================================================================ PixelCNN


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


# ============================================================================ WaveNet


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution whose output at t sees inputs at t, t-d, t-2d, ... only (left padding)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 2, dilation: int = 1):
        super().__init__(in_ch, out_ch, kernel, dilation=dilation)
        self.left_pad = dilation * (kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class GatedResidualLayer(nn.Module):
    """tanh(W_f * h) . sigmoid(W_g * h) with a dilated causal conv; 1x1 residual and skip outputs."""

    def __init__(self, residual: int, gate: int, skip: int, dilation: int):
        super().__init__()
        self.conv = CausalConv1d(residual, 2 * gate, 2, dilation)
        self.res = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    def forward(self, h: torch.Tensor):
        f, g = self.conv(h).chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)
        return h + self.res(z), self.skip(z)


class WaveNetNetwork(nn.Module):
    """Gated dilated causal convolutions over the sequence (dilations 1, 2, 4, ..., repeated
    ``stacks`` times), residual and skip connections, ReLU-1x1-ReLU-1x1 output.

    The input is shifted right by one position (position 0 sees nothing), which makes the causal
    stack strictly autoregressive. A learned per-position bias tells the network where it is
    (e.g. the column of a pixel in the raster scan); it depends on the position only.
    """

    def __init__(self, length: int, n_params: int, residual: int = 32, gate: int = 32, skip: int = 64,
                 layers: Optional[int] = None, stacks: int = 1):
        super().__init__()
        self.length, self.n_params = length, n_params
        layers = layers or max(1, math.ceil(math.log2(max(length, 2))))
        self.input = CausalConv1d(1, residual, 2, 1)
        self.position = nn.Parameter(torch.zeros(residual, length))
        self.layers = nn.ModuleList(
            GatedResidualLayer(residual, gate, skip, 2 ** i) for _ in range(stacks) for i in range(layers)
        )
        self.output = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(), nn.Conv1d(skip, n_params, 1))

    @property
    def receptive_field(self) -> int:
        return 2 + sum(layer.conv.left_pad for layer in self.layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Parameters (N, T, P) of positions 0..T-1 of ``h`` (N, T), T <= D: a causal stack gives
        the same values on a prefix as on the whole sequence."""
        t = h.shape[1]
        shifted = F.pad(h[:, : t - 1], (1, 0)).unsqueeze(1)  # (N, 1, t): position i holds x_{i-1}
        x = self.input(shifted) + self.position[:, :t]
        skips = 0
        for layer in self.layers:
            x, s = layer(x)
            skips = skips + s
        return self.output(skips).transpose(1, 2)

    def params_at(self, h: torch.Tensor, i: int) -> torch.Tensor:
        return self(h[:, :i + 1])[:, i]

    def start_generation(self, n: int, device) -> "WaveNetGeneration":
        return WaveNetGeneration(self, n, device)


class WaveNetGeneration:
    """Fast generation (Paine et al. 2016, "Fast Wavenet Generation Algorithm"): every layer keeps
    a queue of its last ``dilation`` inputs, so the parameters of position i cost one column of each
    layer instead of a pass over the whole prefix. Gives the same values as the full network."""

    def __init__(self, net: WaveNetNetwork, n: int, device):
        self.net = net
        residual = net.position.shape[0]
        self.queues = [torch.zeros(layer.conv.dilation[0], n, residual, device=device) for layer in net.layers]

    @staticmethod
    def _tap(conv: nn.Conv1d, x: torch.Tensor, k: int, bias: bool = True) -> torch.Tensor:
        return F.linear(x, conv.weight[:, :, k], conv.bias if bias else None)

    @torch.no_grad()
    def params(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """Parameters (N, P) of position i, given the encoded sequence ``h`` (only h[:, :i] is read).
        Call with i = 0, 1, 2, ... in order."""
        net = self.net
        zero = torch.zeros_like(h[:, :1])
        prev1 = h[:, i - 1:i] if i >= 1 else zero  # the shifted input at i is x_{i-1}
        prev2 = h[:, i - 2:i - 1] if i >= 2 else zero
        x = self._tap(net.input, prev2, 0, bias=False) + self._tap(net.input, prev1, 1) + net.position[:, i]
        skips = 0
        for layer, queue in zip(net.layers, self.queues):
            slot = i % queue.shape[0]
            past = queue[slot].clone()  # this layer's input at i - dilation (zeros before the start)
            queue[slot] = x
            f, g = (self._tap(layer.conv, past, 0, bias=False) + self._tap(layer.conv, x, 1)).chunk(2, dim=-1)
            z = torch.tanh(f) * torch.sigmoid(g)
            x = x + self._tap(layer.res, z, 0)
            skips = skips + self._tap(layer.skip, z, 0)
        out = skips
        for module in net.output:
            out = self._tap(module, out, 0) if isinstance(module, nn.Conv1d) else module(out)
        return out


# ============================================================================ the shared model


class AutoregressiveModel(Model):
    """Training, exact log-likelihood and sequential sampling for any network + head pair.

    The hyperparameters common to all three models are declared in :data:`TRAINING`.
    """

    ordering = "raster"  # how the D dimensions are ordered (reported with every likelihood)

    def __init__(self, spec, hparams: dict):
        self.spec = spec
        self.hparams = dict(hparams)
        self.head = make_head(spec, self.head_components())
        self.dim = spec.dim
        with seeded(0):
            self.net = self.build_network()
        self.fitted_steps = 0
        self.best_val_nll = None

    # -- subclass interface ---------------------------------------------------------------
    def build_network(self) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def head_components(self) -> Optional[int]:
        """Mixture components of the head on continuous data (None: the model takes no continuous data)."""
        return None

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return to_raster_sequence(x, self.spec.event_shape)

    def from_sequence(self, seq: torch.Tensor) -> torch.Tensor:
        return from_raster_sequence(seq, self.spec.event_shape)

    # -- likelihood -----------------------------------------------------------------------
    def sequence_log_prob(self, seq: torch.Tensor) -> torch.Tensor:
        """log p(x) per example (N,) for a batch already in sequence order, on the model's device."""
        params = self.net(self.head.encode(seq))
        return self.head.log_prob(params, seq).sum(1)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> LogLikelihood:
        self.net.eval()
        batch = int(self.hparams["eval_batch"])
        seq = self.to_sequence(x.float())
        values = [self.sequence_log_prob(seq[i:i + batch].to(self.device)).cpu() for i in range(0, len(seq), batch)]
        return LogLikelihood(torch.cat(values).float(), LikelihoodKind.EXACT,
                             details={"ordering": self.ordering})

    # -- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.net.eval()
        batch = int(self.hparams["sample_batch"])
        parts = []
        for start in range(0, n, batch):
            m = min(batch, n - start)
            seq = torch.zeros(m, self.dim, device=self.device)
            fast = self.net.start_generation(m, self.device) if hasattr(self.net, "start_generation") else None
            for i in range(self.dim):
                h = self.head.encode(seq)
                params = fast.params(h, i) if fast is not None else self.net.params_at(h, i)
                seq[:, i] = self.head.sample(params, i, generator)
            parts.append(seq.cpu())
        if not parts:
            return torch.zeros(0, *self.spec.event_shape)
        return self.from_sequence(torch.cat(parts))

    # -- training -------------------------------------------------------------------------
    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        hp = self.hparams
        steps = int(hp["steps"])
        batch_size = int(hp["batch_size"])
        lr = float(hp["lr"])
        ctx.set_total_steps(steps)

        # Fresh initialisation from the job's seed, so a job is reproducible from its seed alone.
        init_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        with seeded(init_seed):
            self.net = self.build_network()
        train_seq = self.to_sequence(train.x.float())
        if isinstance(self.head, GaussianMixtureHead):
            self.head.set_standardisation(train_seq)
        self.head.to(self.device)
        self.net.to(self.device)
        val_examples = int(hp["val_examples"])
        val_seq = self.to_sequence(val.x[:val_examples].float()) if val is not None and len(val) else None

        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1),
                                                           eta_min=lr * float(hp["lr_final"]))
        # Batches walk through a fresh random permutation of the training set each epoch.
        order, cursor = torch.randperm(len(train_seq), generator=ctx.generator), 0

        def batch() -> torch.Tensor:
            nonlocal order, cursor
            if cursor + batch_size > len(order):
                order, cursor = torch.randperm(len(train_seq), generator=ctx.generator), 0
            xb = train_seq[order[cursor:cursor + batch_size]].to(self.device)
            cursor += batch_size
            return xb

        result = train_keeping_best(
            self.net, ctx, steps=steps, batch=batch, loss=lambda xb: -self.sequence_log_prob(xb).mean(),
            params=self.net.parameters(), optimizer=opt, scheduler=sched, grad_clip=float(hp["grad_clip"]),
            loss_scale=self.dim, val_every=int(hp["eval_every"]),
            validate=(lambda: -float(self._mean_log_prob(val_seq))) if val_seq is not None else None)
        self.fitted_steps = result.steps
        self.best_val_nll = result.best_val

    @torch.no_grad()
    def _mean_log_prob(self, seq: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        batch = int(self.hparams["eval_batch"])
        total = sum(self.sequence_log_prob(seq[i:i + batch].to(self.device)).sum().cpu()
                    for i in range(0, len(seq), batch))
        return total / len(seq)


class MADE(AutoregressiveModel):
    """MADE: ``hidden`` (layer widths), ``direct`` (input-to-output connection), ``features``
    (per-dimension output units when the head has many parameters; None = automatic),
    ``components`` (mixture size on continuous data).

    The network is ``_blocks.MADE`` (shared with the MAF flow): inputs in natural order, hidden
    degrees spread evenly over each layer, so output i depends on x[:, :i] only."""

    ordering = "natural (flattened as stored)"

    def head_components(self) -> Optional[int]:
        return int(self.hparams["components"])

    def build_network(self) -> nn.Module:
        hp = self.hparams
        p = self.head.n_params
        features = hp["features"]
        if features is None and p > 32:
            features = 32
        return MADENetwork(torch.arange(1, self.dim + 1), [int(h) for h in hp["hidden"]], p,
                           hidden_degrees="spread", direct=bool(hp["direct"]),
                           features=None if features is None or int(features) >= p else int(features))

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)

    def from_sequence(self, seq: torch.Tensor) -> torch.Tensor:
        return seq.reshape(seq.shape[0], *self.spec.event_shape)


class PixelCNN(AutoregressiveModel):
    """PixelCNN: ``channels``, ``blocks`` (residual), ``first_kernel`` (type-A layer), ``kernel``,
    ``head_channels``."""

    ordering = "raster (rows, columns, channels)"

    def build_network(self) -> nn.Module:
        hp = self.hparams
        return PixelCNNNetwork(self.spec.event_shape, self.head.n_params, int(hp["channels"]), int(hp["blocks"]),
                               int(hp["first_kernel"]), int(hp["kernel"]),
                               None if hp["head_channels"] is None else int(hp["head_channels"]))


class WaveNet(AutoregressiveModel):
    """WaveNet over the raster sequence: ``residual``, ``gate``, ``skip`` channels, ``layers``
    per stack (None: enough dilations to cover the whole sequence), ``stacks``."""

    ordering = "raster (rows, columns, channels) as one sequence"

    def build_network(self) -> nn.Module:
        hp = self.hparams
        layers = hp["layers"]
        return WaveNetNetwork(self.dim, self.head.n_params, int(hp["residual"]), int(hp["gate"]), int(hp["skip"]),
                              None if layers is None else int(layers), int(hp["stacks"]))


# ============================================================================ hyperparameters

TRAINING = {
    "steps": 1000, "batch_size": 64, "lr": 1e-3, "lr_final": 0.05, "grad_clip": 10.0, "eval_every": 100,
    "val_examples": 1000, "eval_batch": 500, "sample_batch": 1000,
}
TRAINING_DOCS = {
    "steps": "optimisation steps (fewer if the job's deadline comes first)",
    "batch_size": "training examples per step (drawn epoch by epoch without replacement)",
    "lr": "Adam learning rate at the start of the cosine schedule",
    "lr_final": "fraction of lr the cosine schedule ends at",
    "grad_clip": "gradient-norm clip, on the gradient of the NLL in nats per dimension",
    "eval_every": "steps between validation NLL checks; the best checkpoint is kept",
    "val_examples": "validation examples used for those checks",
    "eval_batch": "examples per pass when evaluating likelihoods",
    "sample_batch": "samples generated together",
}

MADE_HYPERPARAMETERS = Hyperparameters(
    defaults={**TRAINING, "hidden": [256, 256], "direct": True, "features": None, "components": 10},
    docs={**TRAINING_DOCS,
          "hidden": "widths of the masked hidden layers",
          "direct": "add a masked direct input-to-output connection",
          "features": "masked output units per dimension, mapped per dimension to the head's parameters "
                      "(None: 32 when the head has more than 32 parameters, else the parameters directly)",
          "components": "Gaussian mixture components per dimension (continuous data)"},
    profiles={
        "smoke": {"hidden": [64, 64], "steps": 150, "batch_size": 64, "lr": 1e-2, "eval_every": 25},
        "quick": {"hidden": [512, 512], "components": 20, "steps": 800, "batch_size": 128, "lr": 5e-3,
                  "eval_every": 50},
        "full": {"hidden": [1024, 1024], "steps": 40000, "batch_size": 128, "lr": 1e-3, "eval_every": 500,
                 "features": 64},
    },
    # Two coordinates need no 512-unit layers: at quick, 128 units fit the 2-D toys as closely or closer
    # (nll_gap on 8gaussians 0.013 against 0.016, 2spirals 0.12 against 0.15) in a third of the time.
    rules=[({"profile": "quick", "tag": "toy2d"}, {"hidden": [128, 128]})],
)
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
WAVENET_HYPERPARAMETERS = Hyperparameters(
    defaults={**TRAINING, "residual": 32, "gate": 32, "skip": 64, "layers": None, "stacks": 1},
    docs={**TRAINING_DOCS,
          "residual": "residual channels",
          "gate": "channels of the gated (tanh x sigmoid) units",
          "skip": "skip-connection channels",
          "layers": "dilated layers per stack, dilations 1, 2, 4, ... (None: enough to cover the sequence)",
          "stacks": "repetitions of the dilation stack"},
    profiles={
        "smoke": {"residual": 16, "gate": 16, "skip": 32, "steps": 60, "batch_size": 32, "lr": 1e-2,
                  "eval_every": 20},
        "quick": {"residual": 32, "gate": 32, "skip": 64, "stacks": 1, "steps": 400, "batch_size": 64, "lr": 5e-3,
                  "eval_every": 50},
        "full": {"residual": 96, "gate": 96, "skip": 192, "stacks": 3, "steps": 30000, "batch_size": 64,
                 "lr": 1e-3, "eval_every": 500},
    },
)


# ============================================================================ registration


def images_only(spec) -> Optional[str]:
    if not spec.is_image:
        return f"pixelcnn needs images of shape (C, H, W); {spec.name} has event shape {spec.event_shape}"
    return None


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="made",
        family="autoregressive",
        factory=MADE,
        data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        hyperparameters=MADE_HYPERPARAMETERS,
        default_datasets={
            "smoke": ["digits-binary", "8gaussians"],
            "quick": ["digits-binary", "digits", TOYS],
            "full": ["digits-binary", "digits", TOYS, "mnist5k-binary", "mnist5k"],
        },
        description="MADE (Germain et al. 2015): masked MLP; Bernoulli / categorical / Gaussian-mixture "
                    "conditionals; exact likelihood.",
    ))
    register(ModelSpec(
        name="pixelcnn",
        family="autoregressive",
        factory=PixelCNN,
        data_kinds=[DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        accepts=images_only,
        hyperparameters=PIXELCNN_HYPERPARAMETERS,
        default_datasets={
            "smoke": ["digits-binary"],
            "quick": ["digits-binary", "digits"],
            "full": ["digits-binary", "digits", "mnist5k-binary", "mnist5k"],
        },
        description="PixelCNN (van den Oord et al. 2016): masked convolutions (A then B), residual blocks; "
                    "Bernoulli / categorical outputs; exact likelihood.",
    ))
    register(ModelSpec(
        name="wavenet",
        family="autoregressive",
        factory=WaveNet,
        data_kinds=[DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        hyperparameters=WAVENET_HYPERPARAMETERS,
        default_datasets={
            "smoke": ["digits-binary"],
            "quick": ["digits-binary", "digits"],
            "full": ["digits-binary", "digits", "mnist5k-binary", "mnist5k"],
        },
        description="WaveNet over raster-ordered pixels: gated dilated causal 1-D convolutions with residual and "
                    "skip connections; Bernoulli / categorical outputs; exact likelihood.",
    ))
