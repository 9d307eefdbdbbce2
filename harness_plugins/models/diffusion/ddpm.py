"""``ddpm``: denoising diffusion probabilistic model (Ho et al. 2020) with its variational bound.

Forward process: the VP process of :class:`~harness_plugins.models.diffusion.schedules.LogLinearSchedule`,
z_t = alpha_t y + sigma_t eps. The network predicts the noise, eps_hat(z_t, t), trained with Ho's
"simple" loss ||eps - eps_hat||^2 at t ~ U[0, 1]; with a log-linear SNR this weighting is, up to
constants, the continuous-time variational bound (Kingma et al. 2021).

The generative model is the T-step chain on t_i = i / T, T = ``sampling_steps``:
z_T ~ N(0, I); p(z_{i-1} | z_i) = q(z_{i-1} | z_i, y = y_hat(z_i)), the forward posterior with the
predicted data y_hat = (z_i - sigma_i eps_hat) / alpha_i (mean and the posterior variance, Ho's
sigma^2 = beta-tilde); a decoder p(y | z_0) reads the data at t = 0. Ancestral sampling draws from
exactly this chain (T + 1 network evaluations) and returns the decoder's mean.

Variational bound (``log_likelihood``, kind ``bound``): -log p(y) <= L_prior + L_diffusion + L_decoder,
- L_prior = KL(q(z_1 | y) || N(0, I)),
- L_diffusion = sum_{i=1}^T KL(q(z_{i-1} | z_i, y) || p(z_{i-1} | z_i))
  = sum_i 1/2 (exp(lambda_{i-1} - lambda_i) - 1) E ||eps - eps_hat(z_i, t_i)||^2 (one noise draw per
  example and step, from a fixed seed),
- L_decoder = -log p(y | z_0) with p(y | z_0) = N(y_hat(z_0), s^2), s = exp(-logsnr_max / 2):
  on discrete data discretised over the levels' bins (Ho et al. 2020: the bins of width 2/(K-1)
  around each level, the outer ones open-ended), so the bound is on the probability of the levels
  themselves and bits per dimension compare with every other image model; on continuous data it is
  the Gaussian density, so the bound is on the density of the (standardised) data.
For the optimal network, splitting steps never loosens the bound (Kingma et al. 2021, the
reconstruction error falls with the noise), so it tightens as T grows: 10, 100, 1000 steps
(tested on a Gaussian, where the exact NLL is known).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from harness import LikelihoodKind, LogLikelihood
from harness_plugins.models._blocks import LOG_2PI
from harness_plugins.models.diffusion.model import EVAL_SEED, DiffusionModel
from harness_plugins.models.diffusion.schedules import LogLinearSchedule

CONTINUOUS_LOGSNR_MAX = 10.0  # decoder std exp(-5) = 0.0067 of the standardised data
LOG_PROB_FLOOR = math.log(1e-12)  # the smallest bin probability the discretised decoder gives (Ho et al.)


def default_logsnr_max(levels: Optional[int]) -> float:
    """logsnr_max when left automatic: on K levels in [-1, 1] the decoder's std is a third of half a bin,
    1 / (3 (K - 1)), so a level's bin holds 99.7% of its decoder mass; 10 on continuous data."""
    return CONTINUOUS_LOGSNR_MAX if levels is None else 2 * math.log(3 * (levels - 1))


def discretised_gaussian_log_prob(y: torch.Tensor, mean: torch.Tensor, std: float, levels: int) -> torch.Tensor:
    """log P(level) per element for y on the grid 2k/(K-1) - 1 under N(mean, std^2) integrated over the
    level's bin [y - h, y + h], h = 1/(K-1), the lowest and highest bins open-ended."""
    h = 1.0 / (levels - 1)
    lo = torch.where(y <= -1 + h / 2, torch.full_like(y, -math.inf), (y - h - mean) / std)
    hi = torch.where(y >= 1 - h / 2, torch.full_like(y, math.inf), (y + h - mean) / std)
    # log(Phi(hi) - Phi(lo)), on the side of the tails for accuracy
    flip = lo > 0
    a, b = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)  # Phi(b) - Phi(a), with a < b and a <= 0
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    out = log_b + torch.log1p(-torch.exp(log_a - log_b).clamp(max=1 - 1e-12))
    return out.clamp_min(LOG_PROB_FLOOR)


def variational_bound(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y: torch.Tensor,
                      schedule: LogLinearSchedule, steps: int, generator: torch.Generator,
                      levels: Optional[int] = None) -> dict:
    """Per-example terms of the T-step bound on -log p(y) (nats, float64): ``prior``, ``diffusion``,
    ``decoder`` and ``total``. ``eps_fn(z, t)`` predicts the noise for a batch (t: (N,) in z's dtype);
    ``levels``: the discretised decoder on K levels, else the Gaussian density."""
    n, dtype, device = y.shape[0], y.dtype, y.device
    t = torch.linspace(0, 1, int(steps) + 1, dtype=torch.float64)
    lam = schedule.logsnr(t)
    yd = y.double()

    def noised(i: int):
        alpha, sigma = math.sqrt(torch.sigmoid(lam[i])), math.sqrt(torch.sigmoid(-lam[i]))
        e = torch.randn(y.shape, generator=generator).to(device=device, dtype=dtype)
        z = alpha * y + sigma * e
        return alpha, sigma, e, eps_fn(z, torch.full((n,), float(t[i]), device=device, dtype=dtype)), z

    a2, s2 = float(torch.sigmoid(lam[-1])), float(torch.sigmoid(-lam[-1]))
    prior = (0.5 * (a2 * yd**2 + s2 - 1 - math.log(s2))).reshape(n, -1).sum(1).cpu()
    diffusion = torch.zeros(n, dtype=torch.float64)
    for i in range(1, int(steps) + 1):
        _, _, e, eps_hat, _ = noised(i)
        weight = 0.5 * math.expm1(float(lam[i - 1] - lam[i]))
        diffusion += weight * ((e - eps_hat).double() ** 2).reshape(n, -1).sum(1).cpu()
    alpha, sigma, _, eps_hat, z = noised(0)
    mean = ((z - sigma * eps_hat) / alpha).double()
    std = math.exp(-schedule.logsnr_max / 2)
    if levels is None:
        log_p = -0.5 * ((yd - mean) / std) ** 2 - math.log(std) - 0.5 * LOG_2PI
    else:
        log_p = discretised_gaussian_log_prob(yd, mean, std, levels)
    decoder = -log_p.reshape(n, -1).sum(1).cpu()
    return {"prior": prior, "diffusion": diffusion, "decoder": decoder, "total": prior + diffusion + decoder}


def ancestral_sample(eps_fn, schedule: LogLinearSchedule, steps: int, z: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """Run the T-step chain from z = z_T down to t = 0 and return the decoder's mean y_hat(z_0)."""
    n = z.shape[0]
    t = torch.linspace(0, 1, int(steps) + 1, dtype=torch.float64)
    lam = schedule.logsnr(t)
    for i in range(int(steps), 0, -1):
        a_t, s_t = math.sqrt(torch.sigmoid(lam[i])), math.sqrt(torch.sigmoid(-lam[i]))
        a_s, s_s = math.sqrt(torch.sigmoid(lam[i - 1])), math.sqrt(torch.sigmoid(-lam[i - 1]))
        y_hat = (z - s_t * eps_fn(z, torch.full((n,), float(t[i]), device=z.device, dtype=z.dtype))) / a_t
        c = -math.expm1(float(lam[i] - lam[i - 1]))  # sigma_{t|s}^2 / sigma_t^2
        noise = torch.randn(z.shape, generator=generator).to(device=z.device, dtype=z.dtype)
        z = a_s * ((1 - c) * z / a_t + c * y_hat) + s_s * math.sqrt(c) * noise
    a_0, s_0 = math.sqrt(torch.sigmoid(lam[0])), math.sqrt(torch.sigmoid(-lam[0]))
    return (z - s_0 * eps_fn(z, torch.zeros(n, device=z.device, dtype=z.dtype))) / a_0


class DDPM(DiffusionModel):
    """Noise-prediction network, ancestral sampling, the T-step variational bound as its likelihood."""

    dequantize = False

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        top = self.hparams["logsnr_max"]
        self.schedule = LogLinearSchedule(default_logsnr_max(self.levels) if top is None else float(top),
                                          float(self.hparams["logsnr_min"]))

    def eps(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(z, t)

    def loss(self, y, generator):
        t = self._uniform(y.shape[0], generator)
        alpha, sigma = self.schedule.alpha_sigma(t)
        shape = (-1,) + (1,) * (y.dim() - 1)
        e = self._noise(y.shape, generator)
        z = alpha.reshape(shape) * y + sigma.reshape(shape) * e
        return ((self.net(z, t) - e) ** 2).mean()

    def sample_model(self, n, generator):
        z = self._noise((n, *self.shape), generator)
        return ancestral_sample(self.eps, self.schedule, int(self.hparams["sampling_steps"]), z, generator)

    def log_likelihood(self, x, labels=None):
        gen = torch.Generator().manual_seed(EVAL_SEED)
        steps = int(self.hparams["sampling_steps"])
        self.net.eval()
        parts = []
        with torch.no_grad():
            for chunk in torch.split(x, int(self.hparams["eval_batch"])):
                parts.append(variational_bound(self.eps, self.to_model(chunk), self.schedule, steps, gen, self.levels))
        terms = {k: torch.cat([p[k] for p in parts]) for k in ("prior", "diffusion", "decoder", "total")}
        log_det = 0.0 if self.levels is not None else -float(self.scale.double().log().sum())
        std = math.exp(-self.schedule.logsnr_max / 2)
        decoder = (f"discretised Gaussian over {self.levels} levels, std {std:.4g} in [-1, 1]" if self.levels
                   else f"Gaussian density, std {std:.4g} of the standardised data")
        details = {"steps": steps, "decoder": decoder, **self.schedule.describe(),
                   **{f"{k}_nats": float(terms[k].mean()) for k in ("prior", "diffusion", "decoder")}}
        protocol = {"bound_steps": steps, **self.schedule.describe()}
        return LogLikelihood((-terms["total"] + log_det).float(), LikelihoodKind.BOUND, details=details,
                             protocol=protocol)
