"""Log-likelihoods of ODE-defined densities by the instantaneous change of variables.

Log-likelihoods of ODE-defined densities by the instantaneous change of variables (Chen et al. 2018;
the probability-flow ODE of Song et al. 2021; the flow-matching ODE of Lipman et al. 2023).

A model defines a velocity field v(x, t) and a prior (the standard normal) at ``t_prior``; its
density at ``t_data`` is the push-forward of the prior along dx/dt = v(x, t). Along a path,
d log p_t(x_t) / dt = -div v(x_t, t), so

    log p(x) = log N(x(t_prior); 0, I) + integral_{t_data}^{t_prior} div v(x(t), t) dt,

where x(t) solves the ODE from x(t_data) = x. :func:`ode_log_likelihood` integrates x and the
divergence together with ``scipy.integrate.solve_ivp`` (RK45, Dormand-Prince, adaptive steps with
relative and absolute tolerances ``rtol``/``atol``, in float64; the network runs in its own dtype).

- ``exact``: the divergence as the trace of the Jacobian, one backward pass per dimension. The result
  is the model's log-density up to the solver's error (for low-dimensional data).
- ``hutchinson``: Hutchinson's estimator tr(J) ~ e^T J e with Rademacher probes e, fixed for the whole
  path (as in FFJORD, Grathwohl et al. 2019), one vector-Jacobian product per probe and evaluation.
  Each probe gives an unbiased estimate of log p(x) (up to solver error); ``probes`` of them share one
  trajectory and are averaged, and their per-example variance is returned, so the uncertainty the
  probes add is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from harness_plugins.models._blocks import LOG_2PI

SOLVER = "RK45 (scipy.integrate.solve_ivp, Dormand-Prince)"


class ODEBudgetExceeded(RuntimeError):
    """The solver needed more velocity evaluations than allowed (a stiff or diverging field)."""


@dataclass
class ODELogLikelihood:
    """``values``: log p(x) per example (float64; averaged over probes for ``hutchinson``).
    ``probe_variance``: the variance across probes of each example's estimate (unbiased; None for
    ``exact`` or a single probe). ``nfe``: velocity evaluations the solver made."""

    values: torch.Tensor
    nfe: int
    probe_variance: Optional[torch.Tensor] = None


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    z = z.reshape(z.shape[0], -1)
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * LOG_2PI


def rademacher(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).double() * 2 - 1


def _exact_divergence(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i d v_i / d x_i per example: one backward pass per dimension."""
    flat = v.reshape(v.shape[0], -1)
    div = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    dim = flat.shape[1]
    for i in range(dim):
        (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < dim - 1)
        div += grad.reshape(grad.shape[0], -1)[:, i].double()
    return div


def _hutchinson_divergence(v: torch.Tensor, x: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """e^T (dv/dx) e for every probe e: (P, N)."""
    out = []
    for p in range(probes.shape[0]):
        e = probes[p].to(v.dtype)
        (grad,) = torch.autograd.grad((v * e).sum(), x, retain_graph=p < probes.shape[0] - 1)
        out.append((grad * e).reshape(grad.shape[0], -1).sum(1).double())
    return torch.stack(out)


def ode_log_likelihood(
    velocity: Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    t_data: float,
    t_prior: float,
    *,
    rtol: float,
    atol: float,
    divergence: str = "exact",
    probes: int = 1,
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float32,
    max_nfe: int = 20000,
) -> ODELogLikelihood:
    """log p(x) of the density that ``velocity`` transports from N(0, I) at ``t_prior`` to ``t_data``.

    ``velocity(x, t)`` takes a batch (N, *shape) in ``dtype`` on the device of ``x`` and a float time.
    ``divergence``: ``"exact"`` or ``"hutchinson"`` (with ``probes`` Rademacher probes drawn from
    ``generator``). Raises :class:`ODEBudgetExceeded` past ``max_nfe`` evaluations.
    """
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence is 'exact' or 'hutchinson', not {divergence!r}")
    device, shape, n = x.device, tuple(x.shape[1:]), x.shape[0]
    size = n * math.prod(shape)
    n_probes = 1 if divergence == "exact" else max(int(probes), 1)
    e = rademacher((n_probes, n, *shape), generator).to(device) if divergence == "hutchinson" else None
    nfe = 0

    def rhs(t: float, state: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        if nfe > max_nfe:
            raise ODEBudgetExceeded(f"the ODE solver needed more than {max_nfe} evaluations at rtol={rtol:g}, "
                                    f"atol={atol:g}")
        xt = torch.from_numpy(state[:size]).reshape(n, *shape).to(device=device, dtype=dtype).requires_grad_(True)
        with torch.enable_grad():
            v = velocity(xt, float(t))
            div = _exact_divergence(v, xt)[None] if e is None else _hutchinson_divergence(v, xt, e)
        return np.concatenate([v.detach().double().cpu().numpy().reshape(-1), div.detach().cpu().numpy().reshape(-1)])

    from scipy.integrate import solve_ivp

    state0 = np.concatenate([x.detach().double().cpu().numpy().reshape(-1), np.zeros(n_probes * n)])
    solution = solve_ivp(rhs, (float(t_data), float(t_prior)), state0, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the ODE solver failed: {solution.message}")
    end = torch.from_numpy(solution.y[:, -1])
    z = end[:size].reshape(n, *shape)
    delta = end[size:].reshape(n_probes, n)
    per_probe = standard_normal_log_prob(z)[None] + delta  # (P, N)
    variance = per_probe.var(0, unbiased=True) if n_probes > 1 else None
    return ODELogLikelihood(per_probe.mean(0), nfe, variance)
