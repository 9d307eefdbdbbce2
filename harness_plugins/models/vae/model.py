"""The VAE model: training by the ELBO, the ELBO and IWAE bounds, and sampling.

:class:`VAEModel` is ``vae``; :class:`CVAEModel` the label-conditional ``cvae``."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.nn import functional as F

from harness import DataKind, FitContext, LikelihoodKind, LogLikelihood, Model, Split
from harness_plugins.models._blocks import LOG_2PI, reset_parameters
from harness_plugins.models.vae.heads import make_head
from harness_plugins.models.vae.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, Standardizer

# arch="auto" uses convolutions for images at least this many pixels on a side; smaller images
# (8x8 digits: 64 values) are flattened for an MLP, which fits them as well and trains far faster.
CONV_MIN_SIDE = 16


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
        return LogLikelihood(values.float(), LikelihoodKind.BOUND, details=details,
                             protocol={"importance_samples": int(self.iwae_k)})

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

