"""Likelihood heads of the VAEs: log p(x | z) from decoder outputs, and draws from it.

A head turns decoder outputs (B, P, D) into log p(x | z) summed over the D dimensions: Bernoulli,
discretised logistic or Gaussian."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from harness import DataKind
from harness_plugins.models._blocks import LOG_2PI

LN2 = math.log(2.0)


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

