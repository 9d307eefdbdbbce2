"""The fully visible Boltzmann machine, trained by PCD with systematic-scan Gibbs sweeps.

The fully visible Boltzmann machine: E(v) = -1/2 v^T W v - b^T v (W symmetric, zero diagonal), PCD with
systematic-scan Gibbs sweeps."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from harness_plugins.models.ebm.common import (EVAL, MONITOR_EVERY, TRAIN, Parameters, gibbs_sweep,
                                               logsumexp_over_states)
from harness_plugins.models.ebm.machine import BoltzmannModel


class FullyVisibleBoltzmann(BoltzmannModel):
    """Fully visible Boltzmann machine, PCD with systematic-scan Gibbs sweeps."""

    def _init_params(self, x, gen):
        d = self.dim
        self.params = Parameters(W=torch.zeros(d, d, dtype=TRAIN, device=self.device),
                                  b=self.base_logits.clone())
        self.chains = self._base_rate_samples(int(self.hp["chains"]), gen)

    def _parameter_shapes(self) -> dict:
        return {"W": (self.dim, self.dim), "b": (self.dim,)}

    def set_parameters(self, W: torch.Tensor, b: torch.Tensor, base_logits: Optional[torch.Tensor] = None) -> None:
        """Use given parameters (W is symmetrised and its diagonal zeroed) instead of training."""
        W = (W + W.T) / 2
        W = W - torch.diag(torch.diagonal(W))
        self.params = Parameters(W=W.to(self.device, TRAIN), b=b.to(self.device, TRAIN))
        self.base_logits = (b if base_logits is None else base_logits).to(self.device, TRAIN)
        self._log_z = None

    def _train(self, x, ctx, gen):
        opt = self._optimizer()
        p = self.params
        for step, batch, lr in self._minibatches(x, int(self.hp["steps"]), ctx, gen):
            for _ in range(int(self.hp["sweeps_per_step"])):
                gibbs_sweep(self.chains, p.W, p.b, gen)
            scalars = {}
            if step % MONITOR_EVERY == 0:
                fields = batch @ p.W + p.b
                scalars["pseudo_nll"] = float((F.softplus(fields) - batch * fields).sum(1).mean())
            corr = batch.T @ batch / len(batch) - self.chains.T @ self.chains / len(self.chains)
            corr.fill_diagonal_(0)
            opt.step({"W": corr, "b": batch.mean(0) - self.chains.mean(0)}, lr)
            ctx.step(len(batch), **scalars)

    @staticmethod
    def _negative_energy(y, W, b):
        return 0.5 * ((y @ W) * y).sum(-1) + y @ b

    def _log_unnormalized(self, v, params):
        return self._negative_energy(v, params["W"], params["b"]), "exact"

    def _exact_log_z_tractable(self):
        return self.dim <= int(self.hp["exact_max_units"])

    def _exact_log_z(self):
        if not self._exact_log_z_tractable():
            return None
        p = self.params.as_dict(EVAL)
        return logsumexp_over_states(self.dim, lambda s: self._negative_energy(s, p["W"], p["b"]), 2 * self.dim,
                                     EVAL, self.device)

    def _ais_log_weights(self, betas, chains, gen):
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)
        y = self._base_rate_samples(chains, gen, EVAL)
        log_w = torch.zeros(chains, dtype=EVAL, device=self.device)
        for k in range(1, len(betas)):
            # log f_k(y) = beta_k (1/2 y'Wy + b'y) + (1 - beta_k) base'y
            log_w += (betas[k] - betas[k - 1]) * self._negative_energy(y, p["W"], p["b"] - base)
            if k < len(betas) - 1:
                beta = betas[k]
                gibbs_sweep(y, beta * p["W"], beta * p["b"] + (1 - beta) * base, gen)
        return log_w, float(F.softplus(base).sum())

    def _raise_log_weights(self, v, betas, gen):
        """Reverse annealing from v. The forward transition at beta_k is a sweep over units 0..D-1, so the
        reverse chain sweeps D-1..0; log f_k(y) = beta_k (1/2 y'Wy + (b - base)'y) + base'y and
        p_0 is the base-rate model."""
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)

        def log_f(beta, y):
            return beta * self._negative_energy(y, p["W"], p["b"] - base) + y @ base

        y = v.clone()
        log_w = torch.zeros(len(y), dtype=EVAL, device=self.device)
        for k in range(len(betas) - 1, 0, -1):
            beta = betas[k]
            log_w += log_f(beta, y)  # f_k(x_k)
            gibbs_sweep(y, beta * p["W"], beta * p["b"] + (1 - beta) * base, gen, reverse=True)
            log_w -= log_f(beta, y)  # f_k(x_{k-1})
        return log_w + y @ base - F.softplus(base).sum()  # + log p_0(x_0)

    def _gibbs_sample(self, n, sweeps, gen):
        y = self._base_rate_samples(n, gen)
        for _ in range(sweeps):
            gibbs_sweep(y, self.params.W, self.params.b, gen)
        return y
