"""The likelihood of the ODE models (``score-sde``, ``flow-matching``) and how it is marked.

A subclass gives ``velocity(y, t)`` in model space and the times ``t_data`` (where the data lies) and
``t_prior`` (where N(0, I) lies); :func:`~harness_plugins.models.diffusion.ode.ode_log_likelihood`
integrates the instantaneous change of variables between them.

Marks (the ``kind`` of the :class:`harness.LogLikelihood`):
- continuous data of at most ``exact_divergence_dims`` dimensions: exact divergence, kind ``exact``
  -- the model's log-density up to the solver's error; details give the solver and its tolerances;
- continuous data of more dimensions: Hutchinson's estimator with ``probes`` probes, kind
  ``estimate``; details give ``probe_stderr``, the standard error that the probes add to the mean
  NLL (from the per-example variance across probes; it is part of the across-example spread that
  the nll row's stderr already measures);
- discrete data: the density is of dequantised data, so the value is the dequantisation lower bound
  (kind ``bound``, :class:`harness.data.ContinuousView`), whichever divergence was used (a
  Hutchinson estimate of the bound is unbiased for it, like the dequantisation draw itself).
"""

from __future__ import annotations

import math

import torch

from harness import LikelihoodKind
from harness_plugins.models.diffusion.model import EVAL_SEED, DiffusionModel
from harness_plugins.models.diffusion.ode import SOLVER, ode_log_likelihood


class ODEModel(DiffusionModel):
    """A model whose density is the push-forward of N(0, I) along dy/dt = velocity(y, t)."""

    dequantize = True
    t_data: float = 0.0
    t_prior: float = 1.0

    def velocity(self, y: torch.Tensor, t: float) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def divergence(self) -> str:
        return "exact" if self.dim <= int(self.hparams["exact_divergence_dims"]) else "hutchinson"

    def _log_density(self, u: torch.Tensor, generator: torch.Generator, stats: list) -> torch.Tensor:
        """log-density of the model's input ``u`` (data, or dequantised [0, 1) values), float64 on the CPU."""
        hp = self.hparams
        out = []
        for chunk in torch.split(u, int(hp["eval_batch"])):
            y, log_det = self.input_to_model(chunk)
            result = ode_log_likelihood(self.velocity, y.to(self.dtype), self.t_data, self.t_prior,
                                        rtol=float(hp["ode_rtol"]), atol=float(hp["ode_atol"]),
                                        divergence=self.divergence, probes=int(hp["probes"]), generator=generator,
                                        dtype=self.dtype)
            stats.append(result)
            out.append(result.values + log_det)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def log_likelihood(self, x, labels=None):
        hp = self.hparams
        gen = torch.Generator().manual_seed(EVAL_SEED)
        stats: list = []
        draws = int(hp["dequant_draws"])
        self.net.eval()
        ll = self.view.log_likelihood(lambda u: self._log_density(u, gen, stats), x.cpu(), gen, draws=draws)
        details = {"solver": SOLVER, "rtol": float(hp["ode_rtol"]), "atol": float(hp["ode_atol"]),
                   "divergence": self.divergence, "nfe": sum(s.nfe for s in stats),
                   "t_data": self.t_data, "t_prior": self.t_prior}
        ll.protocol.update({"solver": SOLVER, "rtol": float(hp["ode_rtol"]), "atol": float(hp["ode_atol"]),
                            "divergence": self.divergence, "t_data": float(self.t_data),
                            "t_prior": float(self.t_prior)})
        if self.divergence == "hutchinson":
            details["probes"] = int(hp["probes"])
            ll.protocol["hutchinson_probes"] = int(hp["probes"])
            variances = [s.probe_variance for s in stats if s.probe_variance is not None]
            if variances:
                # each pass's estimate averages P probes; the value averages the passes (dequantisation draws)
                passes = draws if self.view.dequantized else 1
                per_example = torch.cat(variances).reshape(passes, -1).sum(0) / (int(hp["probes"]) * passes**2)
                details["probe_stderr"] = float(math.sqrt(per_example.sum()) / len(x))
            if not self.view.dequantized:
                ll.kind = LikelihoodKind.ESTIMATE
        ll.details.update(details)
        return ll
