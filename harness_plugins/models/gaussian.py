"""The Gaussian baseline: a full-covariance affine generator x = mu + L z, z ~ N(0, I).

Fitted by maximum likelihood in closed form (sample mean and covariance, Cholesky factor L), so
its log-likelihood is exact on continuous data; on discrete data it models the dequantised values
and reports the dequantisation bound.
"""

from __future__ import annotations

import torch

from harness import (Capability, DataKind, FitContext, Hyperparameters, LikelihoodKind, Model, ModelSpec, Split,
                     hookimpl)
from harness.data import ContinuousView
from harness_plugins.models._blocks import LOG_2PI, TOYS, checked_state

HYPERPARAMETERS = Hyperparameters(
    defaults={"jitter": 1e-6, "dequant_draws": 1},
    docs={
        "jitter": "added to the diagonal of the sample covariance before its Cholesky factorisation",
        "dequant_draws": "dequantisation draws averaged in log_likelihood (discrete data)",
    },
)


class GaussianModel(Model):
    def __init__(self, spec, hparams):
        self.spec = spec
        self.view = ContinuousView(spec)
        self.jitter = float(hparams["jitter"])
        self.dequant_draws = int(hparams["dequant_draws"])
        self.mu = None
        self.L = None

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        ctx.set_total_steps(1)  # the closed-form fit is one step
        y = self.view.model_input(train.x, ctx.generator).reshape(len(train), -1).double()
        self.mu = y.mean(0)
        cov = torch.cov(y.T, correction=0).reshape(y.shape[1], y.shape[1])
        cov = cov + self.jitter * torch.eye(y.shape[1], dtype=cov.dtype)
        self.L = torch.linalg.cholesky(cov)
        ctx.step(len(train))

    def restore_state(self, state) -> None:
        """The fitted mean (D,) and Cholesky factor (D, D), in float64 like a fit."""
        d = self.spec.dim
        super().restore_state(checked_state(type(self).__name__, state, {"mu": (d,), "L": (d, d)}, torch.float64))

    def _log_density(self, y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(y.shape[0], -1).double().cpu()
        z = torch.linalg.solve_triangular(self.L, (y - self.mu).T, upper=False).T
        d = y.shape[1]
        log_det = torch.log(torch.diagonal(self.L)).sum()
        return -0.5 * (z * z).sum(1) - log_det - 0.5 * d * LOG_2PI

    def log_likelihood(self, x, labels=None):
        gen = torch.Generator().manual_seed(12345)
        return self.view.log_likelihood(self._log_density, x, gen, draws=self.dequant_draws)

    def sample(self, n, generator, labels=None):
        z = torch.randn(n, self.mu.shape[0], generator=generator, dtype=torch.float64)
        y = (self.mu + z @ self.L.T).float().reshape(n, *self.spec.event_shape)
        return self.view.to_data(y)


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="gaussian",
        family="gaussian",
        factory=GaussianModel,
        data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        hyperparameters=HYPERPARAMETERS,
        default_datasets={"smoke": ["checkerboard", "8gaussians"], "quick": [TOYS], "full": [TOYS]},
        description="Full-covariance Gaussian (affine generator x = mu + L z), closed-form MLE; exact likelihood.",
    ))
