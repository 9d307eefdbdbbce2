"""The autoregressive model shared by MADE, PixelCNN and WaveNet: training, likelihood, sampling.

For any network + head pair: the sequence view of the data, training, exact log-likelihood and
sequential sampling, and the training hyperparameters every architecture declares."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from harness import FitContext, LikelihoodKind, LogLikelihood, Model, Split
from harness_plugins.models._blocks import seeded, train_keeping_best
from harness_plugins.models.autoregressive.heads import GaussianMixtureHead, make_head


def to_raster_sequence(x: torch.Tensor, event_shape: tuple) -> torch.Tensor:
    """(N, *event) -> (N, D). Images (C, H, W) go in raster order over pixels, channels innermost
    (R, G, B of one pixel are consecutive); other shapes are flattened as stored."""
    if len(event_shape) == 3:
        x = x.permute(0, 2, 3, 1)
    return x.reshape(x.shape[0], -1)


def from_raster_sequence(seq: torch.Tensor, event_shape: tuple) -> torch.Tensor:
    """The inverse of :func:`to_raster_sequence`: (N, D) -> (N, *event)."""
    if len(event_shape) == 3:
        c, h, w = event_shape
        return seq.reshape(seq.shape[0], h, w, c).permute(0, 3, 1, 2).contiguous()
    return seq.reshape(seq.shape[0], *event_shape)


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


# The hyperparameters every autoregressive model declares, with their docs.
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
