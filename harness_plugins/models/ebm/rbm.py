"""The restricted Boltzmann machine: E(v, h) = -v^T W h - a^T v - c^T h, CD-k or PCD-k, block Gibbs sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness_plugins.models.ebm.common import (EVAL, LOG2, MONITOR_EVERY, TRAIN, Parameters, bernoulli,
                                               logsumexp_over_states, rbm_gradients)
from harness_plugins.models.ebm.machine import BoltzmannModel


class RestrictedBoltzmann(BoltzmannModel):
    """RBM trained by CD-k or PCD-k; block Gibbs sampling."""

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        if self.hp["training"] not in ("cd", "pcd"):
            raise ValueError(f"rbm training must be 'cd' or 'pcd', not {self.hp['training']!r}")

    def _init_params(self, x, gen):
        h = int(self.hp["hidden"])
        W = float(self.hp["init_scale"]) * torch.randn(self.dim, h, generator=gen, device=self.device, dtype=TRAIN)
        self.params = Parameters(W=W, a=self.base_logits.clone(), c=torch.zeros(h, dtype=TRAIN, device=self.device))
        self.chains = self._base_rate_samples(int(self.hp["chains"]), gen)

    def _parameter_shapes(self) -> dict:
        h = int(self.hp["hidden"])
        return {"W": (self.dim, h), "a": (self.dim,), "c": (h,)}

    def set_parameters(self, W, a, c, base_logits=None) -> None:
        """Use given parameters (W: visible x hidden) instead of training."""
        self.hp["hidden"] = W.shape[1]
        self.params = Parameters(W=W.to(self.device, TRAIN), a=a.to(self.device, TRAIN), c=c.to(self.device, TRAIN))
        self.base_logits = (a if base_logits is None else base_logits).to(self.device, TRAIN)
        self._log_z = None

    def _train(self, x, ctx, gen):
        opt = self._optimizer()
        p = self.params
        persistent = self.hp["training"] == "pcd"
        for step, batch, lr in self._minibatches(x, int(self.hp["steps"]), ctx, gen):
            start = self.chains if persistent else batch
            grads, v_model, recon = rbm_gradients(p.W, p.a, p.c, batch, start, int(self.hp["k"]), gen,
                                                  monitor=step % MONITOR_EVERY == 0)
            if persistent:
                self.chains = v_model
            opt.step(grads, lr)
            ctx.step(len(batch), **({"recon": recon} if recon is not None else {}))

    def _log_unnormalized(self, v, params):
        return v @ params["a"] + F.softplus(v @ params["W"] + params["c"]).sum(1), "exact"

    def _exact_log_z_tractable(self):
        return min(self.dim, self.params.W.shape[1]) <= int(self.hp["exact_max_units"])

    def _exact_log_z(self):
        limit = int(self.hp["exact_max_units"])
        p = self.params.as_dict(EVAL)
        n_hidden = p["W"].shape[1]
        if n_hidden <= limit and n_hidden <= self.dim:
            return logsumexp_over_states(
                n_hidden, lambda h: h @ p["c"] + F.softplus(h @ p["W"].T + p["a"]).sum(1), 2 * self.dim,
                EVAL, self.device)
        if self.dim <= limit:
            return logsumexp_over_states(self.dim, lambda v: self._log_unnormalized(v, p)[0], 2 * n_hidden,
                                         EVAL, self.device)
        return None

    def _ais_log_weights(self, betas, chains, gen):
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)
        v = self._base_rate_samples(chains, gen, EVAL)
        log_w = torch.zeros(chains, dtype=EVAL, device=self.device)
        for k in range(1, len(betas)):
            # log f_k(v) = (1 - beta_k) base'v + beta_k a'v + sum_j softplus(beta_k (c + vW)_j)
            beta, previous = betas[k], betas[k - 1]
            x = v @ p["W"] + p["c"]
            log_w += ((beta - previous) * (v @ (p["a"] - base))
                      + (F.softplus(beta * x) - F.softplus(previous * x)).sum(1))
            if k < len(betas) - 1:
                h = bernoulli(torch.sigmoid(beta * x), gen)
                v = bernoulli(torch.sigmoid((1 - beta) * base + beta * (h @ p["W"].T + p["a"])), gen)
        # at beta = 0 the hidden units are free: Z_0 = 2^H prod_i (1 + exp(base_i))
        return log_w, p["W"].shape[1] * LOG2 + float(F.softplus(base).sum())

    def _raise_log_weights(self, v, betas, gen):
        """Reverse annealing from v on the visible marginal (hidden units summed out): the transition at
        beta_k, h | v then v | h, is its own reversal; log f_k(v) as for AIS, p_0 the base-rate model."""
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)

        def log_f(beta, v, x):
            return (1 - beta) * (v @ base) + beta * (v @ p["a"]) + F.softplus(beta * x).sum(1)

        x = v @ p["W"] + p["c"]
        log_w = torch.zeros(len(v), dtype=EVAL, device=self.device)
        for k in range(len(betas) - 1, 0, -1):
            beta = betas[k]
            log_w += log_f(beta, v, x)  # f_k(x_k)
            h = bernoulli(torch.sigmoid(beta * x), gen)
            v = bernoulli(torch.sigmoid((1 - beta) * base + beta * (h @ p["W"].T + p["a"])), gen)
            x = v @ p["W"] + p["c"]
            log_w -= log_f(beta, v, x)  # f_k(x_{k-1})
        return log_w + v @ base - F.softplus(base).sum()  # + log p_0(x_0)

    def _gibbs_sample(self, n, sweeps, gen):
        p = self.params
        v = self._base_rate_samples(n, gen)
        for _ in range(sweeps):
            h = bernoulli(torch.sigmoid(v @ p.W + p.c), gen)
            v = bernoulli(torch.sigmoid(h @ p.W.T + p.a), gen)
        return v
