"""The two-layer deep Boltzmann machine: greedy pre-training, then PCD with a mean-field data term.

The two-layer deep Boltzmann machine: E(v, h1, h2) = -v^T W1 h1 - h1^T W2 h2 - a^T v - b1^T h1 - b2^T h2;
greedy pre-training with the doubling trick, then PCD with a mean-field data term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness_plugins.models.ebm.common import (EVAL, LOG2, MONITOR_EVERY, TRAIN, MomentumAscent, Parameters,
                                               bernoulli, binary_entropy, logsumexp_over_states, rbm_gradients)
from harness_plugins.models.ebm.machine import BoltzmannModel


class DeepBoltzmann(BoltzmannModel):
    """Two-hidden-layer DBM: greedy pre-training (doubling trick), then PCD with mean-field."""

    def training_steps(self) -> int:
        """Two pre-training phases of ``pretrain_steps`` (none when it is 0), then ``steps`` joint steps."""
        return 2 * max(int(self.hp["pretrain_steps"]), 0) + int(self.hp["steps"])

    def _init_params(self, x, gen):
        h1, h2 = int(self.hp["hidden1"]), int(self.hp["hidden2"])
        kw = dict(dtype=TRAIN, device=self.device)
        self.params = Parameters(
            W1=float(self.hp["init_scale"]) * torch.randn(self.dim, h1, generator=gen, **kw),
            W2=float(self.hp["init_scale"]) * torch.randn(h1, h2, generator=gen, **kw),
            a=self.base_logits.clone(), b1=torch.zeros(h1, **kw), b2=torch.zeros(h2, **kw))

    def _parameter_shapes(self) -> dict:
        h1, h2 = int(self.hp["hidden1"]), int(self.hp["hidden2"])
        return {"W1": (self.dim, h1), "W2": (h1, h2), "a": (self.dim,), "b1": (h1,), "b2": (h2,)}

    def set_parameters(self, W1, W2, a, b1, b2, base_logits=None) -> None:
        """Use given parameters (W1: visible x h1, W2: h1 x h2) instead of training."""
        self.hp["hidden1"], self.hp["hidden2"] = W2.shape
        self.params = Parameters(**{k: t.to(self.device, TRAIN) for k, t in
                                     dict(W1=W1, W2=W2, a=a, b1=b1, b2=b2).items()})
        self.base_logits = (a if base_logits is None else base_logits).to(self.device, TRAIN)
        self._log_z = None

    # ---- training
    def _pretrain(self, x, ctx, gen):
        """Greedy layer-wise pre-training: RBM(v, h1) with doubled bottom-up input, then
        RBM(h1, h2) on its hidden probabilities with doubled top-down input (Salakhutdinov & Hinton
        2009). The hidden biases of the first and visible biases of the second are averaged into b1."""
        p = self.params
        steps = int(self.hp["pretrain_steps"])
        if steps <= 0:
            return
        lr0, momentum = float(self.hp["pretrain_lr"]), float(self.hp["pretrain_momentum"])
        first = Parameters(W=p.W1.clone(), a=p.a.clone(), c=p.b1.clone())
        opt = MomentumAscent(first, momentum, float(self.hp["weight_decay"]))
        for step, batch, lr in self._minibatches(x, steps, ctx, gen, lr0):
            grads, _, recon = rbm_gradients(first.W, first.a, first.c, batch, batch, 1, gen, up=2.0,
                                            monitor=step % MONITOR_EVERY == 0)
            opt.step(grads, lr)
            ctx.step(len(batch), **({"recon": recon} if recon is not None else {}))
        second = Parameters(W=p.W2.clone(), a=torch.zeros_like(p.b1), c=p.b2.clone())
        opt = MomentumAscent(second, momentum, float(self.hp["weight_decay"]))
        for step, batch, lr in self._minibatches(x, steps, ctx, gen, lr0):
            h1 = bernoulli(torch.sigmoid(2 * (batch @ first.W) + first.c), gen)
            grads, _, recon = rbm_gradients(second.W, second.a, second.c, h1, h1, 1, gen, down=2.0,
                                            monitor=step % MONITOR_EVERY == 0)
            opt.step(grads, lr)
            ctx.step(len(batch), **({"recon_h1": recon} if recon is not None else {}))
        p.W1.copy_(first.W)
        p.a.copy_(first.a)
        p.b1.copy_((first.c + second.a) / 2)
        p.W2.copy_(second.W)
        p.b2.copy_(second.c)

    def mean_field(self, v, params, iters, tol=0.0):
        """Fully factorised q(h1) q(h2) maximising the variational bound for visibles v: alternate
        the exact block updates mu1 <- sigmoid(v W1 + W2 mu2 + b1), mu2 <- sigmoid(mu1 W2 + b2),
        starting from the doubled bottom-up pass."""
        v_w1 = v @ params["W1"]
        bottom_up = v_w1 + params["b1"]
        mu1 = torch.sigmoid(bottom_up + v_w1)
        mu2 = torch.sigmoid(mu1 @ params["W2"] + params["b2"])
        for _ in range(iters):
            new_mu1 = torch.sigmoid(bottom_up + mu2 @ params["W2"].T)
            mu2 = torch.sigmoid(new_mu1 @ params["W2"] + params["b2"])
            change = float((new_mu1 - mu1).abs().max())
            mu1 = new_mu1
            if change < tol:
                break
        return mu1, mu2

    def _train(self, x, ctx, gen):
        self._pretrain(x, ctx, gen)
        p = self.params
        n = int(self.hp["chains"])
        v = self._base_rate_samples(n, gen)
        h1 = bernoulli(torch.sigmoid(2 * (v @ p.W1) + p.b1), gen)
        h2 = bernoulli(torch.sigmoid(h1 @ p.W2 + p.b2), gen)
        for _ in range(int(self.hp["chain_burn_in"])):  # bring the chains near the pre-trained model
            v, h1, h2 = self._gibbs_step(v, h1, h2, gen)
        opt = self._optimizer()
        for step, batch, lr in self._minibatches(x, int(self.hp["steps"]), ctx, gen):
            params = self.params.as_dict()
            mu1, mu2 = self.mean_field(batch, params, int(self.hp["mean_field_iters"]))
            for _ in range(int(self.hp["k"])):
                v, h1, h2 = self._gibbs_step(v, h1, h2, gen)
            grads = {
                "W1": batch.T @ mu1 / len(batch) - v.T @ h1 / n,
                "W2": mu1.T @ mu2 / len(batch) - h1.T @ h2 / n,
                "a": batch.mean(0) - v.mean(0),
                "b1": mu1.mean(0) - h1.mean(0),
                "b2": mu2.mean(0) - h2.mean(0),
            }
            scalars = {}
            if step % MONITOR_EVERY == 0:
                scalars["recon"] = float(((batch - torch.sigmoid(mu1 @ p.W1.T + p.a)) ** 2).sum(1).mean())
            opt.step(grads, lr)
            ctx.step(len(batch), **scalars)

    def _gibbs_step(self, v, h1, h2, gen):
        """One alternating Gibbs step: the odd layers {v, h2} given h1, then h1 given {v, h2}."""
        p = self.params
        v = bernoulli(torch.sigmoid(h1 @ p.W1.T + p.a), gen)
        h2 = bernoulli(torch.sigmoid(h1 @ p.W2 + p.b2), gen)
        h1 = bernoulli(torch.sigmoid(v @ p.W1 + h2 @ p.W2.T + p.b1), gen)
        return v, h1, h2

    # ---- likelihood
    def _log_unnormalized(self, v, params):
        limit = int(self.hp["exact_max_units"])
        n1, n2 = params["W2"].shape
        visible = v @ params["a"]
        bottom_up = v @ params["W1"]  # (N, h1)
        if n1 <= limit and n1 <= n2:  # sum h2 analytically, enumerate h1
            def log_weight(h1):
                per_state = h1 @ params["b1"] + F.softplus(h1 @ params["W2"] + params["b2"]).sum(1)
                return bottom_up @ h1.T + per_state
            return visible + logsumexp_over_states(n1, log_weight, len(v) + n2, EVAL, v.device), "exact"
        if n2 <= limit:  # sum h1 analytically, enumerate h2
            def log_weight(h2):
                inputs = (bottom_up + params["b1"])[:, None, :] + (h2 @ params["W2"].T)[None]
                return h2 @ params["b2"] + F.softplus(inputs).sum(-1)
            return visible + logsumexp_over_states(n2, log_weight, len(v) * n1, EVAL, v.device), "exact"
        mu1, mu2 = self.mean_field(v, params, int(self.hp["eval_mean_field_iters"]), tol=1e-7)
        bound = (visible + (bottom_up * mu1).sum(1) + ((mu1 @ params["W2"]) * mu2).sum(1)
                 + mu1 @ params["b1"] + mu2 @ params["b2"] + binary_entropy(mu1) + binary_entropy(mu2))
        return bound, "mean-field lower bound"

    def _exact_log_z_tractable(self):
        return self.params.W2.shape[0] <= int(self.hp["exact_max_units"])

    def _exact_log_z(self):
        if not self._exact_log_z_tractable():
            return None
        p = self.params.as_dict(EVAL)
        n1, n2 = p["W2"].shape

        def log_weight(h1):  # v and h2 are independent given h1: both summed out analytically
            return (h1 @ p["b1"] + F.softplus(h1 @ p["W1"].T + p["a"]).sum(1)
                    + F.softplus(h1 @ p["W2"] + p["b2"]).sum(1))
        return logsumexp_over_states(n1, log_weight, 2 * (self.dim + n2), EVAL, self.device)

    def _ais_log_weights(self, betas, chains, gen):
        """AIS on the marginal over h1, with v and h2 summed out analytically:
        log f_beta(h1) = beta b1'h1 + sum_i softplus((1-beta) base_i + beta (a + W1 h1)_i)
                         + sum_k softplus(beta (b2 + h1 W2)_k);
        at beta = 0 h1 is uniform and Z_0 = 2^(h1 + h2) prod_i (1 + exp(base_i))."""
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)
        n1, n2 = p["W2"].shape
        h1 = bernoulli(torch.full((chains, n1), 0.5, dtype=EVAL, device=self.device), gen)
        log_w = torch.zeros(chains, dtype=EVAL, device=self.device)

        def log_f(beta, h1, x_v, x_2):
            return (beta * (h1 @ p["b1"]) + F.softplus((1 - beta) * base + beta * x_v).sum(1)
                    + F.softplus(beta * x_2).sum(1))

        for k in range(1, len(betas)):
            beta = betas[k]
            x_v = h1 @ p["W1"].T + p["a"]
            x_2 = h1 @ p["W2"] + p["b2"]
            log_w += log_f(beta, h1, x_v, x_2) - log_f(betas[k - 1], h1, x_v, x_2)
            if k < len(betas) - 1:
                v = bernoulli(torch.sigmoid((1 - beta) * base + beta * x_v), gen)
                h2 = bernoulli(torch.sigmoid(beta * x_2), gen)
                h1 = bernoulli(torch.sigmoid(beta * (v @ p["W1"] + h2 @ p["W2"].T + p["b1"])), gen)
        log_z_base = (n1 + n2) * LOG2 + float(F.softplus(base).sum())
        return log_w, log_z_base

    def _raise_log_weights(self, v, betas, gen):
        """Reverse annealing on the h1 marginal of AIS (same f_beta, same transitions, each its own
        reversal). The annealing model ends with v ~ p(v | h1_K); the reverse chain starts at h1_K drawn
        from the mean-field posterior r(h1 | v) = prod_j mu1_j^h1_j (1 - mu1_j)^(1 - h1_j), so the
        weight's top term is f(v, h1_K) / r(h1_K | v), with f(v, h1) = exp(a'v + v'W1 h1 + b1'h1)
        prod_k (1 + exp(b2 + h1 W2)_k) (h2 summed out), and its bottom term p_0(h1_0) = 2^-h1."""
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)
        n1 = p["W2"].shape[0]
        mu1, _ = self.mean_field(v, p, int(self.hp["eval_mean_field_iters"]), tol=1e-7)
        h1 = bernoulli(mu1, gen)
        log_r = torch.where(h1 > 0, torch.log(mu1), torch.log1p(-mu1)).sum(1)
        log_w = (v @ p["a"] + ((v @ p["W1"]) * h1).sum(1) + h1 @ p["b1"]
                 + F.softplus(h1 @ p["W2"] + p["b2"]).sum(1) - log_r)

        def log_f(beta, h1, x_v, x_2):
            return (beta * (h1 @ p["b1"]) + F.softplus((1 - beta) * base + beta * x_v).sum(1)
                    + F.softplus(beta * x_2).sum(1))

        top = len(betas) - 1
        for k in range(top, 0, -1):
            beta = betas[k]
            x_v, x_2 = h1 @ p["W1"].T + p["a"], h1 @ p["W2"] + p["b2"]
            if k < top:
                log_w += log_f(beta, h1, x_v, x_2)  # f_k(h1_k); at the top f_K(v, h1_K) stands for it
            v_aux = bernoulli(torch.sigmoid((1 - beta) * base + beta * x_v), gen)
            h2 = bernoulli(torch.sigmoid(beta * x_2), gen)
            h1 = bernoulli(torch.sigmoid(beta * (v_aux @ p["W1"] + h2 @ p["W2"].T + p["b1"])), gen)
            log_w -= log_f(beta, h1, h1 @ p["W1"].T + p["a"], h1 @ p["W2"] + p["b2"])  # f_k(h1_{k-1})
        return log_w - n1 * LOG2  # + log p_0(h1_0)

    def _gibbs_sample(self, n, sweeps, gen):
        p = self.params
        v = self._base_rate_samples(n, gen)
        h2 = bernoulli(torch.full((n, p.W2.shape[1]), 0.5, dtype=TRAIN, device=self.device), gen)
        h1 = bernoulli(torch.sigmoid(v @ p.W1 + h2 @ p.W2.T + p.b1), gen)
        for _ in range(sweeps):
            v, h1, h2 = self._gibbs_step(v, h1, h2, gen)
        return v
