"""What the three diffusion models share: data mapping, training, batched sampling, sampling variants.

What the three diffusion models share: the map between data and the space the network works in,
training, sampling in batches, and sampling variants (the same fitted model with other step counts).

Model space.
- Continuous data is standardised with the training split's per-dimension mean and standard
  deviation; a density there is one in data space after adding -sum(log std).
- ``ddpm`` on discrete data (K levels, binary: K = 2) maps level k to 2k/(K-1) - 1 in [-1, 1] (Ho et al.
  2020) and scores the levels themselves with a discretised decoder; samples are rounded to the
  nearest level.
- ``score-sde`` and ``flow-matching`` have a density, so on discrete data they see uniformly
  dequantised values u in [0, 1) (:class:`harness.data.ContinuousView`) mapped to y = 2u - 1; the
  density of u is that of y plus D log 2, and the likelihood is the dequantisation bound. Samples are
  quantised back to levels.

Training: Adam with linear warm-up and cosine decay, the loss of each model on mini-batches, and the
parameters that did best on the validation split kept (``_blocks.train_keeping_best``; the
validation loss is the same loss on up to ``val_examples`` validation examples with noise drawn
from a fixed seed, so checks compare like with like).

Sampling steps (``sampling_steps``) are a hyperparameter; ``sampling_sweep`` lists further step
counts, measured as sampling variants (:meth:`harness.Model.sampling_variants`): views of the fitted
model that share its network and differ only in ``sampling_steps``.
"""

from __future__ import annotations

import copy
import math

import torch

from harness import DataKind, FitContext, Model, Split
from harness.data import ContinuousView
from harness_plugins.models._blocks import seeded, train_keeping_best
from harness_plugins.models.diffusion.networks import build_network

EVAL_SEED = 12345  # noise of likelihood evaluation (bound terms, dequantisation, probes)
VAL_SEED = 54321  # noise of the validation loss


def variant_label(steps: int) -> str:
    return f"steps={int(steps)}"


class DiffusionModel(Model):
    """Base class: subclasses give ``loss(y, generator)`` (a scalar, on model-space data) and
    ``sample_model(n, generator)`` (model-space samples with ``hparams["sampling_steps"]`` steps)."""

    dequantize = False  # True: a density on dequantised data; False: discrete data scored by a decoder

    def __init__(self, spec, hparams):
        self.spec = spec
        self.hparams = dict(hparams)
        self.shape = tuple(spec.event_shape)
        self.dim = math.prod(self.shape)
        self.levels = None if spec.kind is DataKind.CONTINUOUS else int(spec.levels)
        self.view = ContinuousView(spec)
        _positive_steps(self.hparams)
        self.shift = torch.zeros(self.shape)
        self.scale = torch.ones(self.shape)
        self.net = self._build(seed=0)

    # ------------------------------------------------------------------ construction
    def _build(self, seed: int):
        with seeded(seed):
            net = build_network(self.shape, self.hparams)
        return net.to(self.device)

    def to(self, device) -> "DiffusionModel":
        super().to(device)
        self.shift, self.scale = self.shift.to(self.device), self.scale.to(self.device)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    # ------------------------------------------------------------------ data <-> model space
    def to_model(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """Data (levels for discrete data) -> model space, on the model's device (a fresh dequantisation
        draw from ``generator`` for density models on discrete data)."""
        x = x.to(self.device)
        if self.levels is None:
            return (x - self.shift) / self.scale
        if self.dequantize:
            return 2 * self.view.model_input(x, generator).to(self.device) - 1
        return 2 * x / (self.levels - 1) - 1

    def input_to_model(self, u: torch.Tensor) -> tuple:
        """The density's input (data for continuous data, dequantised [0, 1) values otherwise) -> (model
        space, log|det| to add to a model-space log-density to get the input's)."""
        u = u.to(self.device)
        if self.levels is None:
            return (u - self.shift) / self.scale, -float(self.scale.double().log().sum())
        return 2 * u - 1, self.dim * math.log(2.0)

    def from_model(self, y: torch.Tensor) -> torch.Tensor:
        """Model space -> data space: unstandardised, or levels."""
        if self.levels is None:
            return y * self.scale + self.shift
        if self.dequantize:
            return self.view.to_data(((y + 1) / 2).cpu())
        return torch.clamp(torch.round((y + 1) * (self.levels - 1) / 2), 0, self.levels - 1)

    # ------------------------------------------------------------------ training
    def loss(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _noise(self, shape, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device=self.device, dtype=self.dtype)

    def _uniform(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, generator=generator).to(device=self.device, dtype=self.dtype)

    def validation_loss(self, y: torch.Tensor) -> float:
        gen = torch.Generator().manual_seed(VAL_SEED)
        self.net.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for chunk in torch.split(y, int(self.hparams["eval_batch"])):
                total += float(self.loss(chunk, gen)) * len(chunk)
                count += len(chunk)
        return total / max(count, 1)

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        hp = self.hparams
        steps, warmup = int(hp["steps"]), max(int(hp["warmup"]), 1)
        ctx.set_total_steps(steps)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        if self.levels is None:
            x = train.x.double()
            self.shift = x.mean(0).float().to(self.device)
            self.scale = x.std(0).clamp_min(1e-6).float().to(self.device)
        self.net = self._build(seed)
        n = len(train)

        def batch():
            idx = torch.randint(0, n, (int(hp["batch_size"]),), generator=ctx.generator)
            return self.to_model(train.x[idx], ctx.generator)

        val_y = self.to_model(val.x[: int(hp["val_examples"])], torch.Generator().manual_seed(VAL_SEED))
        params = list(self.net.parameters())
        optimizer = torch.optim.Adam(params, lr=float(hp["lr"]))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
        train_keeping_best(
            self.net, ctx, steps=steps, batch=batch, loss=lambda y: self.loss(y, ctx.generator), params=params,
            optimizer=optimizer, scheduler=schedule, grad_clip=float(hp["grad_clip"]),
            val_every=int(hp["val_every"]), validate=(lambda: self.validation_loss(val_y)) if len(val_y) else None)

    # ------------------------------------------------------------------ sampling
    def sample_model(self, n: int, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n, generator, labels=None):
        self.net.eval()
        out = []
        batch = int(self.hparams["eval_batch"])
        with torch.no_grad():
            for start in range(0, n, batch):
                out.append(self.from_model(self.sample_model(min(batch, n - start), generator)).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, *self.shape))

    def with_sampling_steps(self, steps: int) -> "DiffusionModel":
        """A view of this fitted model that samples with ``steps`` steps (shares the network)."""
        view = copy.copy(self)
        view.hparams = {**self.hparams, "sampling_steps": int(steps)}
        return view

    def sampling_variants(self) -> dict:
        """``steps=S`` for each S of ``sampling_sweep`` (the model's own ``sampling_steps`` maps to the model
        itself, naming its own rows); nothing when the sweep is empty."""
        sweep = [int(s) for s in self.hparams["sampling_sweep"]]
        if not sweep:
            return {}
        own = int(self.hparams["sampling_steps"])
        return {variant_label(s): self if s == own else self.with_sampling_steps(s) for s in sorted({*sweep, own})}

    def time_grid(self, start: float, end: float) -> torch.Tensor:
        """``sampling_steps + 1`` times from ``start`` to ``end`` (float64, CPU)."""
        return torch.linspace(start, end, int(self.hparams["sampling_steps"]) + 1, dtype=torch.float64)

    def times(self, t, n: int) -> torch.Tensor:
        """The time ``t`` (a float or 0-d tensor) for a batch of ``n``, in the network's dtype and device."""
        return torch.full((n,), float(t), device=self.device, dtype=self.dtype)


def _positive_steps(hp: dict) -> None:
    values = [hp["sampling_steps"], *hp["sampling_sweep"]]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"sampling_steps and sampling_sweep take positive integers, got {hp['sampling_steps']!r} "
                         f"and {hp['sampling_sweep']!r}")
