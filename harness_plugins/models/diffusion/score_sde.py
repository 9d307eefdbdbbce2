"""``score-sde``: a score model of the VP SDE with the probability-flow ODE (Song et al. 2021).

Forward SDE: dy = -1/2 beta(t) y dt + sqrt(beta(t)) dw on t in [t_eps, 1], beta linear from
``beta_min`` to ``beta_max`` (:class:`~harness_plugins.models.diffusion.schedules.LinearBetaSDE`), so
y_t = alpha_t y + sigma_t eps. The network predicts the noise; the score is
s(y, t) = -eps_hat(y, t) / sigma_t. Training: denoising score matching with the weighting sigma_t^2,
i.e. ||eps - eps_hat(y_t, t)||^2 at t ~ U[t_eps, 1].

Likelihood: the probability-flow ODE dy/dt = -1/2 beta(t) (y + s(y, t)) has the SDE's marginals; its
density at t_eps is the push-forward of N(0, I) at t = 1 (``ode_model``: exact divergence in low
dimension, Hutchinson's estimator above, dequantisation bound on discrete data). ``t_eps`` = 1e-5 as
in Song et al.

Sampling (``sampler``): ``sde``, Euler-Maruyama on the reverse-time SDE
dy = [-1/2 beta y - beta s] dt + sqrt(beta) dw-bar from t = 1 to SAMPLE_EPS in ``sampling_steps``
steps, the last step without noise (one network evaluation a step); or ``ode``, Heun's method on the
probability-flow ODE over the same grid (two evaluations a step, one on the last).
"""

from __future__ import annotations

import torch

from harness_plugins.models.diffusion.ode_model import ODEModel
from harness_plugins.models.diffusion.schedules import LinearBetaSDE

SAMPLE_EPS = 1e-3  # sampling stops at this time (Song et al.'s sampling epsilon)


class ScoreSDE(ODEModel):
    t_prior = 1.0

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        self.sde = LinearBetaSDE(float(self.hparams["beta_min"]), float(self.hparams["beta_max"]))
        self.t_data = float(self.hparams["t_eps"])

    def loss(self, y, generator):
        t = self.t_data + (1 - self.t_data) * self._uniform(y.shape[0], generator)
        alpha, sigma = self.sde.alpha_sigma(t)
        shape = (-1,) + (1,) * (y.dim() - 1)
        e = self._noise(y.shape, generator)
        return ((self.net(alpha.reshape(shape) * y + sigma.reshape(shape) * e, t) - e) ** 2).mean()

    def score(self, y: torch.Tensor, t: float) -> torch.Tensor:
        _, sigma = self.sde.alpha_sigma_float(t)
        return -self.net(y, self.times(t, y.shape[0])) / sigma

    def velocity(self, y, t):
        return -0.5 * self.sde.beta(float(t)) * (y + self.score(y, t))

    def sample_model(self, n, generator):
        y = self._noise((n, *self.shape), generator)
        grid = self.time_grid(1.0, SAMPLE_EPS)
        last = len(grid) - 2
        for k in range(len(grid) - 1):
            t, t_next = float(grid[k]), float(grid[k + 1])
            dt = t - t_next  # > 0: time runs backwards
            if self.hparams["sampler"] == "sde":
                beta = self.sde.beta(t)
                y = y + (0.5 * beta * y + beta * self.score(y, t)) * dt
                if k < last:
                    y = y + (beta * dt) ** 0.5 * self._noise(y.shape, generator)
            else:
                d = self.velocity(y, t)
                y_next = y - dt * d
                y = y_next if k == last else y - 0.5 * dt * (d + self.velocity(y_next, t_next))
        return y
