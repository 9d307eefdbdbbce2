"""Output heads of the autoregressive models: one dimension's conditional distribution.

Bernoulli on binary data, a categorical over the K levels on discrete data, a mixture of Gaussians on
continuous data."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness import DataKind
from harness_plugins.models._blocks import LOG_2PI


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
