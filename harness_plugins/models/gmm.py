"""Gaussian mixture baseline: k full-covariance components fitted by expectation-maximisation.

Exact log-likelihood (log-sum-exp over components) and ancestral sampling. On discrete data it
models the dequantised values and reports the dequantisation bound.
"""

from __future__ import annotations

import math

import torch

from harness import (Capability, DataKind, FitContext, Hyperparameters, LikelihoodKind, Model, ModelSpec, Split,
                     hookimpl)
from harness.data import ContinuousView
from harness_plugins.models._blocks import LOG_2PI, TOYS, checked_state

HYPERPARAMETERS = Hyperparameters(
    defaults={"components": 8, "max_iter": 100, "tol": 1e-5, "reg_covar": 1e-6, "max_train": 0, "n_init": 3,
              "kmeans_iter": 20},
    docs={
        "components": "mixture components (k)",
        "max_iter": "EM iterations per initialisation at most (fewer once the log-likelihood moves by < tol)",
        "tol": "EM stops when the mean training log-likelihood changes by less than this (nats)",
        "reg_covar": "added to the diagonal of every component covariance",
        "max_train": "fit on a random subset of this many training examples (0: all of them)",
        "n_init": "k-means++ initialisations; the EM run with the best training log-likelihood is kept",
        "kmeans_iter": "Lloyd iterations after k-means++ seeding, before EM",
    },
    profiles={
        "smoke": {"components": 8, "max_iter": 30, "max_train": 5000, "n_init": 1},
        "quick": {"components": 16, "max_iter": 200, "n_init": 3},
        "full": {"components": 32, "max_iter": 500, "n_init": 5},
    },
)


def mixture_log_prob(y: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """Per-component log w_k + log N(y; mu_k, L_k L_k^T); shape (N, K). Float64 throughout."""
    n, d = y.shape
    diff = y[:, None, :] - means[None]  # (N, K, D)
    # z = L_k^-1 (y - mu_k) for every component at once (K small inverses, one batched product).
    chol_inv = torch.linalg.solve_triangular(chol, torch.eye(d, dtype=chol.dtype).expand_as(chol), upper=False)
    z = torch.einsum("kij,nkj->nki", chol_inv, diff)
    log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
    return torch.log(weights)[None] - 0.5 * (z * z).sum(-1) - log_det[None] - 0.5 * d * LOG_2PI


def kmeans_plusplus(y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with the job's generator."""
    n = y.shape[0]
    centres = [y[torch.randint(n, (1,), generator=generator)].squeeze(0)]
    d2 = ((y - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum()
        idx = torch.multinomial(probs.float(), 1, generator=generator)
        centres.append(y[idx].squeeze(0))
        d2 = torch.minimum(d2, ((y - centres[-1]) ** 2).sum(1))
    return torch.stack(centres)


class GaussianMixtureModel(Model):
    def __init__(self, spec, hparams):
        self.spec = spec
        self.view = ContinuousView(spec)
        self.k = int(hparams["components"])
        self.max_iter = int(hparams["max_iter"])
        self.tol = float(hparams["tol"])
        self.reg = float(hparams["reg_covar"])
        self.max_train = int(hparams["max_train"]) or None
        self.n_init = int(hparams["n_init"])
        self.kmeans_iter = int(hparams["kmeans_iter"])
        self.weights = self.means = self.chol = None

    def set_parameters(self, weights, means, covariances) -> None:
        """Set parameters directly (float64): weights (K,), means (K, D), covariances (K, D, D)."""
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.chol = torch.linalg.cholesky(torch.as_tensor(covariances, dtype=torch.float64))
        self.k = self.weights.shape[0]

    def restore_state(self, state) -> None:
        """The fitted weights (K,), means (K, D) and Cholesky factors (K, D, D), K the ``components``
        hyperparameter; kept in float64 like a fit."""
        d = self.spec.dim
        shapes = {"weights": (self.k,), "means": (self.k, d), "chol": (self.k, d, d)}
        super().restore_state(checked_state(type(self).__name__, state, shapes, torch.float64))

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        """EM from ``n_init`` k-means initialisations (k-means++ seeding, then Lloyd iterations);
        the run with the best training log-likelihood is kept. One step per EM iteration; the total
        given to the progress bar, n_init * max_iter, is an upper bound (EM stops once it converges)."""
        ctx.set_total_steps(self.n_init * self.max_iter)
        y = self.view.model_input(train.x, ctx.generator).reshape(len(train), -1).double()
        if self.max_train and y.shape[0] > self.max_train:
            y = y[torch.randperm(y.shape[0], generator=ctx.generator)[: self.max_train]]
        best = None
        for _ in range(self.n_init):
            params, mean_ll = self._em(y, ctx)
            if best is None or mean_ll > best[1]:
                best = (params, mean_ll)
            if ctx.should_stop():
                break
        self.weights, self.means, self.chol = best[0]

    def _em(self, y: torch.Tensor, ctx: FitContext):
        n, d = y.shape
        eye = torch.eye(d, dtype=torch.float64)
        means = kmeans_plusplus(y, self.k, ctx.generator)
        for _ in range(self.kmeans_iter):  # Lloyd's algorithm
            assign = torch.cdist(y, means).argmin(1)
            counts = torch.bincount(assign, minlength=self.k)
            sums = torch.zeros_like(means).index_add_(0, assign, y)
            means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], means)
        resp = torch.nn.functional.one_hot(torch.cdist(y, means).argmin(1), self.k).double()
        previous = mean_ll = -math.inf
        params = None
        for _ in range(self.max_iter):
            # M step.
            nk = resp.sum(0) + 10 * torch.finfo(torch.float64).eps
            weights = nk / n
            means = (resp.T @ y) / nk[:, None]
            diff = y[:, None, :] - means[None]
            cov = torch.einsum("nk,nki,nkj->kij", resp, diff, diff) / nk[:, None, None] + self.reg * eye
            params = (weights, means, torch.linalg.cholesky(cov))
            # E step.
            log_joint = mixture_log_prob(y, *params)
            log_norm = torch.logsumexp(log_joint, 1)
            resp = torch.exp(log_joint - log_norm[:, None])
            mean_ll = float(log_norm.mean())
            ctx.step(n, log_likelihood=mean_ll)
            if abs(mean_ll - previous) < self.tol or ctx.should_stop():
                break
            previous = mean_ll
        return params, mean_ll

    def _log_density(self, y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(y.shape[0], -1).double().cpu()
        out = [torch.logsumexp(mixture_log_prob(b, self.weights, self.means, self.chol), 1) for b in y.split(4096)]
        return torch.cat(out)

    def log_likelihood(self, x, labels=None):
        return self.view.log_likelihood(self._log_density, x, torch.Generator().manual_seed(12345))

    def sample(self, n, generator, labels=None):
        comp = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        y = self.means[comp] + torch.einsum("nij,nj->ni", self.chol[comp], z)
        return self.view.to_data(y.float().reshape(n, *self.spec.event_shape))


def _low_dimensional(spec):
    if spec.dim > 64:
        return f"gmm uses full covariances; {spec.name} has {spec.dim} dimensions (limit 64)"
    return None


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="gmm",
        family="gmm",
        factory=GaussianMixtureModel,
        data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        accepts=_low_dimensional,
        hyperparameters=HYPERPARAMETERS,
        default_datasets={"smoke": ["checkerboard", "8gaussians"], "quick": [TOYS], "full": [TOYS]},
        description="Gaussian mixture (full covariances) fitted by EM with k-means++ seeding; exact likelihood.",
    ))
