"""Noise schedules of the variance-preserving (VP) diffusions behind ``ddpm`` and ``score-sde``.

A VP process noises data x into z_t = alpha_t x + sigma_t eps, eps ~ N(0, I), with
alpha_t^2 + sigma_t^2 = 1, for t in [0, 1] (t = 0: data, t = 1: noise). It is described by its
log signal-to-noise ratio lambda_t = log(alpha_t^2 / sigma_t^2), decreasing in t:
alpha_t^2 = sigmoid(lambda_t), sigma_t^2 = sigmoid(-lambda_t).

- :class:`LogLinearSchedule` (``ddpm``): lambda linear in t between ``logsnr_max`` and
  ``logsnr_min`` (the fixed schedule of Kingma et al. 2021, "Variational diffusion models"). A chain of
  T steps on the uniform grid t_i = i / T then takes equal steps in log-SNR, and the variational
  bound of the T-step chain tightens as T grows (see ``ddpm.variational_bound``).
- :class:`LinearBetaSDE` (``score-sde``): the VP SDE of Song et al. (2021),
  dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw with beta(t) = beta_min + t (beta_max - beta_min), the
  continuous limit of the linear beta schedule of Ho et al. (2020);
  log alpha_t = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min.

Both give ``alpha_sigma(t)`` and ``logsnr(t)`` for a tensor of times.
"""

from __future__ import annotations

import math

import torch


class LogLinearSchedule:
    """lambda_t = logsnr_max + (logsnr_min - logsnr_max) t."""

    def __init__(self, logsnr_max: float, logsnr_min: float):
        if not logsnr_max > logsnr_min:
            raise ValueError(f"logsnr_max ({logsnr_max}) must exceed logsnr_min ({logsnr_min})")
        self.logsnr_max, self.logsnr_min = float(logsnr_max), float(logsnr_min)

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        return self.logsnr_max + (self.logsnr_min - self.logsnr_max) * t

    def alpha_sigma(self, t: torch.Tensor) -> tuple:
        lam = self.logsnr(t)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def describe(self) -> dict:
        return {"schedule": "log-linear SNR", "logsnr_max": self.logsnr_max, "logsnr_min": self.logsnr_min}


class LinearBetaSDE:
    """The VP SDE with beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021)."""

    def __init__(self, beta_min: float, beta_max: float):
        if not 0 < beta_min <= beta_max:
            raise ValueError(f"need 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha_sigma(self, t: torch.Tensor) -> tuple:
        log_alpha = self.log_alpha(t)
        return log_alpha.exp(), (-torch.expm1(2 * log_alpha)).sqrt()

    def alpha_sigma_float(self, t: float) -> tuple:
        log_alpha = self.log_alpha(float(t))
        return math.exp(log_alpha), math.sqrt(-math.expm1(2 * log_alpha))

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t)
        return 2 * (alpha.log() - sigma.log())

    def describe(self) -> dict:
        return {"schedule": "VP SDE, linear beta", "beta_min": self.beta_min, "beta_max": self.beta_max}
