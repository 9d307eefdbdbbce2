"""Variational autoencoders: ``vae`` and the label-conditional ``cvae`` (family ``vae``).

Model. z ~ N(0, I) in ``latent`` dimensions, x ~ p(x | z) with a decoder network, and an encoder
q(z | x) = N(mu(x), diag sigma^2(x)) trained jointly by maximising the ELBO with the
reparametrisation trick (Kingma & Welling 2014). The networks follow the data's shape
(``arch="auto"``): MLPs for vectors (2-D toys) and for images under 16 pixels a side (8x8 digits,
flattened), strided convolutions / transposed convolutions for larger images; ``arch="mlp"`` or
``"conv"`` forces one. ``kl_warmup`` (a fraction of the steps) anneals the KL weight from 0 to 1
during training only; every reported bound uses the full KL.

Likelihood p(x | z) by data kind, always an exact distribution over the data as given:
  - binary: independent Bernoulli per dimension;
  - discrete with K levels: discretised logistic per dimension (the logistic's mass over each
    level's bin, the two end bins open; PixelCNN++-style), so p(x | z) sums to one over the K levels
    and no dequantisation is involved;
  - continuous: Gaussian with a mean and a learned (decoder-output) variance per dimension. The data
    are standardised with training-split statistics; the Jacobian of that map is added back, so the
    values are densities of the original data.

Evaluation. Both numbers are lower bounds on log p(x) (kind ``bound``):
  - ``elbo(x)``: E_q[log p(x|z)] - KL(q(z|x) || p(z)), the KL in closed form, the expectation by
    Monte Carlo;
  - ``iwae(x, k)``: the importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i | x),
    z_i ~ q(z|x) (Burda, Grosse & Salakhutdinov 2016); its expectation never decreases with k and
    tends to log p(x).
``log_likelihood`` reports the IWAE bound with ``iwae_k`` samples (details ``{"k", "estimator":
"iwae"}``), so the core ``nll`` metric shows it; the ``elbo_nll`` metric registered here reports
-ELBO so both bounds appear in the results.

``cvae`` conditions encoder and decoder on the one-hot class label. ``log_likelihood(x, labels)``
is then the conditional bound on log p(x | y) (details ``{"conditional": True}``); without labels it
is the bound on log p(x) = log sum_y p(y) p(x | y) with the training-split class frequencies p(y)
(a lower bound, since every term is). ``sample(n, generator, labels)`` honours the labels and draws
them uniformly when none are given.

Samples are draws from the model, z ~ p(z) then x ~ p(x | z) (not the decoder mean), so they come
from the distribution whose likelihood is reported. Hyperparameter ``sample_mode="mean"`` returns
the decoder mode instead (quantised for discrete data).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from harness import (
    Capability,
    DataKind,
    FitContext,
    Hyperparameters,
    LikelihoodKind,
    LogLikelihood,
    Measurement,
    MetricContext,
    MetricSpec,
    Model,
    ModelSpec,
    Output,
    Role,
    Split,
    Tolerance,
    hookimpl,
)
from harness_plugins.models._blocks import LOG_2PI, TOYS, halvings, mlp, reset_parameters

LN2 = math.log(2.0)
# arch="auto" uses convolutions for images at least this many pixels on a side; smaller images
# (8x8 digits: 64 values) are flattened for an MLP, which fits them as well and trains far faster.
CONV_MIN_SIDE = 16


# ----------------------------------------------------------------------------- likelihood heads
# A head turns decoder outputs of shape (B, P, D) (P parameters per data dimension) into
# log p(x | z) summed over the D dimensions, and draws from that distribution.


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for small and large d (Maechler 2012)."""
    small = torch.clamp(d, max=LN2)  # each branch sees only its own range, so no inf/NaN gradients
    large = torch.clamp(d, min=LN2)
    return torch.where(d < LN2, torch.log(-torch.expm1(-small)), torch.log1p(-torch.exp(-large)))


class BernoulliHead:
    name = "bernoulli"
    params = 1

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(out[:, 0], x, reduction="none").sum(-1)

    def sample(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(out[:, 0].shape, generator=generator).to(out.device)
        return (u < torch.sigmoid(out[:, 0])).float()

    def mode(self, out: torch.Tensor) -> torch.Tensor:
        return (out[:, 0] > 0).float()


class DiscretizedLogisticHead:
    """Logistic(mu, s) on a [0, 1] scale where level k sits at c_k = k / (K-1); level k receives
    the mass of [c_k - h, c_k + h] with h = 1 / (2(K-1)), level 0 everything below and level K-1
    everything above. Exact: the K probabilities sum to one."""

    name = "discretized_logistic"
    params = 2
    min_log_scale = -7.0

    def __init__(self, levels: int):
        self.levels = int(levels)
        self.half_bin = 0.5 / (self.levels - 1)

    def _mean_log_scale(self, out: torch.Tensor):
        log_s = self.min_log_scale + F.softplus(out[:, 1] - self.min_log_scale)
        return out[:, 0], log_s

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mu, log_s = self._mean_log_scale(out)
        inv_s = torch.exp(-log_s)
        centre = x / (self.levels - 1)
        upper = (centre + self.half_bin - mu) * inv_s
        lower = (centre - self.half_bin - mu) * inv_s
        first, last = x <= 0, x >= self.levels - 1
        # sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))), a - b = 2h / s
        log_upper = torch.where(last, torch.zeros_like(upper), F.logsigmoid(upper))
        log_lower = torch.where(first, torch.zeros_like(lower), F.logsigmoid(-lower))
        log_width = torch.where(first | last, torch.zeros_like(upper), log1mexp(2 * self.half_bin * inv_s))
        return (log_upper + log_lower + log_width).sum(-1)

    def sample(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mu, log_s = self._mean_log_scale(out)
        u = torch.rand(mu.shape, generator=generator).clamp(1e-6, 1 - 1e-6).to(out.device)
        y = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))
        return torch.clamp(torch.round(y * (self.levels - 1)), 0, self.levels - 1)

    def mode(self, out: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(out[:, 0] * (self.levels - 1)), 0, self.levels - 1)


class GaussianHead:
    """N(mu, exp(logvar)) per dimension; logvar = m + softplus(raw - m) keeps it above m."""

    name = "gaussian"
    params = 2
    min_logvar = -9.0

    def logvar(self, out: torch.Tensor) -> torch.Tensor:
        return self.min_logvar + F.softplus(out[:, 1] - self.min_logvar)

    def raw_for_logvar(self, logvar: torch.Tensor) -> torch.Tensor:
        """The decoder output that gives ``logvar`` (inverse of :meth:`logvar`)."""
        d = logvar - self.min_logvar
        return self.min_logvar + d + torch.log(-torch.expm1(-d))

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = out[:, 0], self.logvar(out)
        return -0.5 * (LOG_2PI + logvar + (x - mu) ** 2 * torch.exp(-logvar)).sum(-1)

    def sample(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        eps = torch.randn(out[:, 0].shape, generator=generator).to(out.device)
        return out[:, 0] + torch.exp(0.5 * self.logvar(out)) * eps

    def mode(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, 0]


def make_head(spec):
    if spec.kind is DataKind.BINARY:
        return BernoulliHead()
    if spec.kind is DataKind.DISCRETE:
        return DiscretizedLogisticHead(spec.levels)
    return GaussianHead()


# ----------------------------------------------------------------------------- networks


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


# ----------------------------------------------------------------------------- the model


class VAEModel(Model):
    """A VAE on any data kind; ``conditional=True`` makes it the cVAE."""

    conditional = False

    def __init__(self, spec, hparams: dict):
        self.spec = spec
        self.hparams = dict(hparams)
        self.dim = spec.dim
        self.num_classes = int(spec.num_classes) if self.conditional else 0
        self.head = make_head(spec)
        latent = int(hparams["latent"] or (2 if self.dim <= 4 else 16))
        arch = hparams["arch"]
        if arch == "auto":
            arch = "conv" if spec.is_image and min(spec.event_shape[1:]) >= CONV_MIN_SIDE else "mlp"
        self.arch = arch
        hidden, depth = int(hparams["hidden"]), int(hparams["depth"])
        cond = self.num_classes
        if arch == "conv":
            channels = int(hparams["channels"])
            self.encoder = ConvEncoder(spec.event_shape, cond, channels, hidden, latent)
            self.decoder = ConvDecoder(spec.event_shape, cond, channels, hidden, latent, self.head.params)
        elif arch == "mlp":
            self.encoder = MLPEncoder(self.dim, cond, hidden, depth, latent)
            self.decoder = MLPDecoder(self.dim, cond, hidden, depth, latent, self.head.params)
        else:
            raise ValueError(f"arch must be auto, mlp or conv, not {arch!r}")
        self.latent = latent
        self.standardizer = Standardizer(self.dim)
        self.class_log_prior = torch.full((max(self.num_classes, 1),), -math.log(max(self.num_classes, 1)))
        self.iwae_k = int(hparams["iwae_k"])
        # decoder rows per evaluation pass (examples x importance samples): bounds evaluation memory
        self.eval_rows = int(hparams["eval_rows"] or (512 if arch == "conv" else 8192))
        self.eval_seed = int(hparams["eval_seed"])
        reset_parameters(self.encoder, 0)
        reset_parameters(self.decoder, 1)

    # -------------------------------------------------------------- data <-> model space
    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder input: standardised (continuous), levels / (K-1) (discrete), 0/1 (binary)."""
        if self.spec.kind is DataKind.CONTINUOUS:
            flat = self.standardizer(x.reshape(x.shape[0], -1))
            return flat.reshape(x.shape)
        if self.spec.kind is DataKind.DISCRETE:
            return x / (self.spec.levels - 1)
        return x

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        """What the likelihood head scores, flattened to (B, D)."""
        flat = x.reshape(x.shape[0], -1)
        return self.standardizer(flat) if self.spec.kind is DataKind.CONTINUOUS else flat

    def _log_jacobian(self) -> torch.Tensor:
        if self.spec.kind is DataKind.CONTINUOUS:
            return self.standardizer.log_abs_det()
        return torch.zeros((), device=self.device)

    def _one_hot(self, labels: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
        if not self.conditional:
            return None
        if labels is None:
            raise ValueError("cvae needs labels here")
        return F.one_hot(labels.long().reshape(n), self.num_classes).float().to(self.device)

    # -------------------------------------------------------------- bounds on one batch
    def _log_weights(self, x: torch.Tensor, cond, k: int, generator: torch.Generator) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for z_i ~ q(z | x), shape (B, k), in data-space nats."""
        b = x.shape[0]
        mu, logvar = self.encoder(self._encoder_input(x), cond)
        eps = torch.randn(b, k, self.latent, generator=generator).to(self.device)
        z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps
        log_q = -0.5 * (eps**2 + LOG_2PI).sum(-1) - 0.5 * logvar.sum(-1)[:, None]
        log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
        cond_k = None if cond is None else cond.repeat_interleave(k, 0)
        out = self.decoder(z.reshape(b * k, self.latent), cond_k)
        target = self._target(x).repeat_interleave(k, 0)
        log_px = self.head.log_prob(out, target).reshape(b, k) + self._log_jacobian()
        return log_px + log_pz - log_q

    def _elbo_terms(self, x: torch.Tensor, cond, samples: int, generator: torch.Generator):
        """(reconstruction E_q log p(x|z) by Monte Carlo, KL(q || p) in closed form), each (B,)."""
        b = x.shape[0]
        mu, logvar = self.encoder(self._encoder_input(x), cond)
        eps = torch.randn(b, samples, self.latent, generator=generator).to(self.device)
        z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps
        cond_s = None if cond is None else cond.repeat_interleave(samples, 0)
        out = self.decoder(z.reshape(b * samples, self.latent), cond_s)
        target = self._target(x).repeat_interleave(samples, 0)
        rec = self.head.log_prob(out, target).reshape(b, samples).mean(1) + self._log_jacobian()
        kl = 0.5 * (mu**2 + torch.exp(logvar) - 1 - logvar).sum(-1)
        return rec, kl

    # -------------------------------------------------------------- public bounds
    @torch.no_grad()
    def _per_example(self, x: torch.Tensor, labels, rows_per_example: int, fn) -> torch.Tensor:
        """Apply ``fn(x_batch, cond_batch) -> (B,)`` over batches sized to ``eval_rows``; when a
        cVAE gets no labels, marginalise: log sum_y p(y) exp(fn(x, y))."""
        for m in self.modules():
            m.eval()
        batch = max(1, self.eval_rows // max(rows_per_example, 1))
        out = []
        for start in range(0, x.shape[0], batch):
            xb = x[start:start + batch].to(self.device)
            if not self.conditional:
                out.append(fn(xb, None).double().cpu())
            elif labels is not None:
                out.append(fn(xb, self._one_hot(labels[start:start + batch], xb.shape[0])).double().cpu())
            else:
                per_class = []
                for c in range(self.num_classes):
                    yc = torch.full((xb.shape[0],), c, dtype=torch.long)
                    per_class.append(fn(xb, self._one_hot(yc, xb.shape[0])).double().cpu() + float(self.class_log_prior[c]))
                out.append(torch.logsumexp(torch.stack(per_class, 1), 1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def elbo(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None, samples: int = 1,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-example ELBO in nats (float64): Monte Carlo reconstruction with ``samples`` draws
        and the closed-form KL. A lower bound on log p(x) (on log p(x | y) given cVAE labels)."""
        gen = generator if generator is not None else torch.Generator().manual_seed(self.eval_seed)

        def fn(xb, cond):
            rec, kl = self._elbo_terms(xb, cond, samples, gen)
            return rec - kl

        return self._per_example(x, labels, samples, fn)

    def iwae(self, x: torch.Tensor, k: int, labels: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-example IWAE bound with ``k`` importance samples, in nats (float64)."""
        gen = generator if generator is not None else torch.Generator().manual_seed(self.eval_seed)
        chunk = max(1, min(k, self.eval_rows))

        def fn(xb, cond):
            parts = [self._log_weights(xb, cond, min(chunk, k - s), gen).double() for s in range(0, k, chunk)]
            return torch.logsumexp(torch.cat(parts, 1), 1) - math.log(k)

        return self._per_example(x, labels, min(k, self.eval_rows), fn)

    def log_likelihood(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> LogLikelihood:
        values = self.iwae(x, self.iwae_k, labels)
        details = {"k": self.iwae_k, "estimator": "iwae", "likelihood": self.head.name}
        if self.conditional:
            details["conditional"] = labels is not None
            if labels is None:
                details["marginalised_over_labels"] = True
        return LogLikelihood(values.float(), LikelihoodKind.BOUND, details=details)

    # -------------------------------------------------------------- training and sampling
    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        h = self.hparams
        ctx.set_total_steps(int(h["steps"]))
        if self.conditional and train.y is None:
            raise ValueError("cvae needs a labelled training split")
        if self.spec.kind is DataKind.CONTINUOUS:
            self.standardizer.fit(train.x)
        if self.conditional:
            counts = torch.bincount(train.y.long(), minlength=self.num_classes).double()
            self.class_log_prior = torch.log(counts / counts.sum()).float()
        seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
        reset_parameters(self.encoder, seed)
        reset_parameters(self.decoder, seed + 1)
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        opt = torch.optim.Adam(params, lr=float(h["lr"]))
        steps = int(h["steps"])
        warmup = int(float(h["kl_warmup"]) * steps)
        batch = min(int(h["batch_size"]), len(train))
        for m in self.modules():
            m.train()
        for step in range(steps):
            idx = torch.randint(0, len(train), (batch,), generator=ctx.generator)
            xb = train.x[idx].to(self.device)
            cond = self._one_hot(train.y[idx], batch) if self.conditional else None
            rec, kl = self._elbo_terms(xb, cond, 1, ctx.generator)
            beta = min(1.0, (step + 1) / warmup) if warmup else 1.0
            loss = -(rec - beta * kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ctx.step(batch, loss=float(loss.detach()))
            if ctx.should_stop():
                break
        for m in self.modules():
            m.eval()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        for m in self.modules():
            m.eval()
        if self.conditional and labels is None:
            labels = torch.randint(0, self.num_classes, (n,), generator=generator)
        mode = self.hparams["sample_mode"]
        batch = max(1, self.eval_rows)
        out = []
        for start in range(0, n, batch):
            b = min(batch, n - start)
            z = torch.randn(b, self.latent, generator=generator).to(self.device)
            cond = self._one_hot(labels[start:start + b], b) if self.conditional else None
            params = self.decoder(z, cond)
            x = self.head.mode(params) if mode == "mean" else self.head.sample(params, generator)
            if self.spec.kind is DataKind.CONTINUOUS:
                x = self.standardizer.inverse(x)
            out.append(x.float().cpu())
        return torch.cat(out).reshape(n, *self.spec.event_shape)


class CVAEModel(VAEModel):
    conditional = True


# ----------------------------------------------------------------------------- hyperparameters

DEFAULTS = {
    "steps": 1000, "batch_size": 128, "lr": 1e-3, "kl_warmup": 0.0, "hidden": 128, "depth": 2, "channels": 32,
    "latent": None, "arch": "auto", "iwae_k": 64, "eval_rows": None, "eval_seed": 12345, "sample_mode": "sample",
}
DOCS = {
    "steps": "optimisation steps (fewer if the job's deadline comes first)",
    "batch_size": "training examples per step (at most the training split)",
    "lr": "Adam learning rate",
    "kl_warmup": "fraction of the steps over which the KL weight rises from 0 to 1 (training only)",
    "hidden": "hidden units of the MLP layers (and of the conv nets' dense layer)",
    "depth": "hidden layers of the MLP encoder and decoder",
    "channels": "channels of the first conv layer (doubling per halving, at most 4x); arch conv",
    "latent": "latent dimensions (None: 2 for data of at most 4 dimensions, else 16)",
    "arch": "network type: auto (conv for images at least 16 pixels a side, else mlp), mlp or conv",
    "iwae_k": "importance samples of the IWAE bound that log_likelihood reports",
    "eval_rows": "decoder rows (examples x importance samples) per evaluation pass, bounds memory "
                 "(None: 512 for conv, 8192 for mlp)",
    "eval_seed": "seed of the Monte Carlo draws in elbo and iwae when no generator is given",
    "sample_mode": "sample: draws from p(x|z); mean: the decoder's mode",
}
CHOICES = {"arch": ["auto", "mlp", "conv"], "sample_mode": ["sample", "mean"]}

# Per-step CPU cost is ~5-10 ms for the MLPs at batch 128 (single thread), so quick is ~15-20 s a
# dataset; full is meant for a GPU.
PROFILES = {
    "smoke": {"steps": 300, "batch_size": 128, "hidden": 64, "depth": 2, "channels": 16, "iwae_k": 8,
              "lr": 2e-3, "kl_warmup": 0.2},
    "quick": {"steps": 2000, "batch_size": 128, "hidden": 256, "depth": 2, "channels": 32, "iwae_k": 64,
              "lr": 1e-3, "kl_warmup": 0.2},
    "full": {"steps": 50000, "batch_size": 128, "hidden": 512, "depth": 3, "channels": 64, "iwae_k": 1000,
             "lr": 5e-4, "kl_warmup": 0.1},
}
# The seven 2-D toys (every one a quick default) take 1200 steps, which keeps run --all within its
# budget at a cost of a few hundredths of a nat of nll_gap (docs/benchmarks.md).
VAE_HYPERPARAMETERS = Hyperparameters(defaults=DEFAULTS, docs=DOCS, profiles=PROFILES, choices=CHOICES,
                                      rules=[({"profile": "quick", "tag": "toy2d"}, {"steps": 1200})])
CVAE_HYPERPARAMETERS = Hyperparameters(defaults=DEFAULTS, docs=DOCS, choices=CHOICES,
                                       profiles={**PROFILES, "quick": {**PROFILES["quick"], "steps": 3000}})


# ----------------------------------------------------------------------------- registration


def _needs_labels(spec) -> Optional[str]:
    if spec.num_classes == 0:
        return f"cvae conditions on class labels; {spec.name} is unlabelled"
    return None


def elbo_nll(ctx: MetricContext) -> list:
    """-ELBO on the evaluation split (the profile's eval_examples of the test split), an upper bound on
    the NLL."""
    model = ctx.model
    if not hasattr(model, "elbo"):
        raise TypeError(f"{type(model).__name__} has no elbo(x) method")
    test = ctx.evaluation_split()
    x, y = test.x, test.y
    conditional = bool(getattr(model, "conditional", False)) and y is not None
    values = model.elbo(x, y if conditional else None).double()
    nll = -values
    stderr = float(nll.std(unbiased=True) / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    details = {"conditional": conditional, "samples": 1}
    if ctx.dataset.spec.is_image:
        details["bpd"] = float(nll.mean()) / (ctx.dataset.spec.dim * LN2)
    return [Measurement("elbo_nll", float(nll.mean()), estimator="bound", stderr=stderr, n=len(nll),
                        details=details)]


def _vae_only(model_spec, dataset_spec) -> Optional[str]:
    if model_spec.family != "vae":
        return f"elbo_nll is reported for the vae family; {model_spec.name} is {model_spec.family}"
    return None


@hookimpl
def harness_register_models(register):
    kinds = [DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY]
    register(ModelSpec(
        name="vae",
        family="vae",
        factory=VAEModel,
        data_kinds=kinds,
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.BOUND,
        hyperparameters=VAE_HYPERPARAMETERS,
        default_datasets={"smoke": ["8gaussians", "digits-binary"], "quick": [TOYS, "digits"],
                          "full": [TOYS, "digits", "mnist5k-binary", "mnist5k"]},
        description="VAE (MLP or conv by data shape; Bernoulli / discretised logistic / Gaussian p(x|z)); "
                    "IWAE bound.",
    ))
    register(ModelSpec(
        name="cvae",
        family="vae",
        factory=CVAEModel,
        data_kinds=kinds,
        capabilities=[Capability.SAMPLE, Capability.CONDITIONAL],
        likelihood=LikelihoodKind.BOUND,
        hyperparameters=CVAE_HYPERPARAMETERS,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits"],
                          "full": ["digits", "mnist5k-binary", "mnist5k"]},
        accepts=_needs_labels,
        description="Class-conditional VAE (one-hot label into encoder and decoder); IWAE bound on log p(x|y).",
    ))


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(
        name="elbo_nll",
        compute=elbo_nll,
        outputs=[Output("elbo_nll", unit="nats", higher_is_better=False, role=Role.LIKELIHOOD,
                        tolerance=Tolerance(relative=0.02, absolute=0.05), order=40,
                        description="-ELBO per example (nats), an upper bound on the NLL; looser than the IWAE "
                                    "bound that nll reports")],
        requires=[Capability.LOG_LIKELIHOOD],
        applies=_vae_only,
        description="-ELBO on the test split (nats): the looser of the two VAE bounds; nll shows the IWAE bound.",
    ))
