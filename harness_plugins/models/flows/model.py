"""The flow model: preprocessing, a flow body and a standard normal base; training, likelihood, sampling.

The flow model: a preprocessing layer, a flow body from one of the architectures, the standard normal
base; maximum-likelihood training, exact (or dequantisation-bound) log-likelihood and sampling.

Data. Continuous data first pass a fixed :class:`Standardize` layer (train mean and standard
deviation; its log-det is part of the flow). Discrete and binary data are dequantised to [0, 1) by
:class:`harness.data.ContinuousView` and pass a :class:`LogitTransform`
y -> logit(a + (1 - 2a) y), log-det included; the likelihood is then the dequantisation lower bound
(kind ``bound``) and the bits/dim the core reports is an upper bound on the discrete NLL. Samples are
quantised back to levels.
"""

from __future__ import annotations

import math

import torch

from harness import FitContext, Model, Split
from harness.data import ContinuousView
from harness_plugins.models._blocks import seeded, train_keeping_best
from harness_plugins.models.flows.glow import data_dependent_init
from harness_plugins.models.flows.layers import Chain, Flow, LogitTransform, Standardize, standard_normal_log_prob


class FlowModel(Model):
    """A normalising flow trained by maximum likelihood (Adam, warm-up + cosine schedule).

    ``build(event_shape, hparams)`` returns the layers of the flow body; the model prepends the
    preprocessing layer (Standardize or LogitTransform) and evaluates log N(f(x)) + log|det|.
    The parameters are (re)initialised at the start of ``fit`` from a seed drawn from
    ``ctx.generator``, so a job is reproducible from its seed; before ``fit`` the model holds a
    seed-0 initialisation (usable, e.g. for tests).
    """

    def __init__(self, spec, hparams, build):
        self.spec = spec
        self.view = ContinuousView(spec)
        self.hparams = dict(hparams)
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
        with seeded(seed):
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
        steps, warmup = int(hp["steps"]), max(int(hp["warmup"]), 1)
        ctx.set_total_steps(steps)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        self.flow = self._make_flow(seed, None if self.view.dequantized else train.x)
        n = len(train)

        def batch(size):
            idx = torch.randint(0, n, (size,), generator=ctx.generator)
            return self.view.model_input(train.x[idx], ctx.generator).to(self.device)

        self.flow.train()
        data_dependent_init(self.flow, batch(min(int(hp["init_batch"]), n)))
        params = [p for p in self.flow.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=float(hp["lr"]))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
        val_x = val.x[: int(hp["val_examples"])]
        train_keeping_best(
            self.flow, ctx, steps=steps, batch=lambda: batch(int(hp["batch_size"])),
            loss=lambda x: -self.log_density(x).mean(), params=params, optimizer=optimizer, scheduler=schedule,
            grad_clip=float(hp["grad_clip"]), loss_scale=math.prod(self.shape), val_every=int(hp["val_every"]),
            validate=(lambda: self._mean_nll(val_x)) if len(val_x) else None)

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
