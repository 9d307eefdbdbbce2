"""What the Boltzmann machines share below the model: draws, state enumeration, AIS schedule, Gibbs, PCD.

What the Boltzmann machines share below the model: dtypes, Bernoulli draws, enumeration of binary
states, the base-rate model, the AIS temperature schedule, Gibbs sweeps of a fully visible machine,
the parameter container, momentum ascent and the CD/PCD statistics of an RBM."""

from __future__ import annotations

import math
from typing import Optional

import torch

LOG2 = math.log(2.0)
EVAL = torch.float64  # dtype for log Z, AIS and log-likelihoods
TRAIN = torch.float32  # dtype for training and sampling
ENUMERATION_CHUNK_ELEMENTS = 2 ** 22  # bound on the tensor size of one chunk of enumerated states
MONITOR_EVERY = 10  # training steps between progress scalars (reconstruction error, pseudo-NLL)


def flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def device_generator(source: torch.Generator, device) -> torch.Generator:
    """A generator on ``device`` seeded from ``source`` (reproducible from the job's seed)."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=source))
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def bernoulli(probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(probs.shape, generator=gen, device=probs.device, dtype=probs.dtype) < probs).to(probs.dtype)


def binary_entropy(mu: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of independent Bernoulli(mu) units, summed over the last axis."""
    return -(torch.xlogy(mu, mu) + torch.xlogy(1 - mu, 1 - mu)).sum(-1)


def binary_states(n_units: int, start: int = 0, stop: Optional[int] = None, dtype=EVAL, device="cpu") -> torch.Tensor:
    """Binary configurations number ``start``..``stop``-1 of ``n_units`` units, shape (S, n_units)."""
    stop = 2 ** n_units if stop is None else stop
    codes = torch.arange(start, stop, device=device)
    return ((codes[:, None] >> torch.arange(n_units, device=device)) & 1).to(dtype)


def logsumexp_over_states(n_units: int, log_weight, width: int, dtype=EVAL, device="cpu") -> torch.Tensor:
    """log sum_s exp(log_weight(s)) over all 2^n_units binary states s, enumerated in chunks.

    ``log_weight`` maps states (S, n_units) to log-weights (..., S); ``width`` is the number of
    elements it creates per state (sets the chunk size). Returns a tensor of shape (...).
    """
    total = 2 ** n_units
    chunk = max(1, min(total, ENUMERATION_CHUNK_ELEMENTS // max(1, width)))
    result = None
    for start in range(0, total, chunk):
        states = binary_states(n_units, start, min(total, start + chunk), dtype, device)
        part = torch.logsumexp(log_weight(states), dim=-1)
        result = part if result is None else torch.logaddexp(result, part)
    return result


def log_mean_exp_with_stderr(log_w: torch.Tensor) -> tuple:
    """log mean exp(log_w) and its delta-method standard error std(w) / mean(w) / sqrt(n),
    computed from weights rescaled by their maximum (so nothing overflows)."""
    log_w = log_w.double()
    n = log_w.numel()
    shift = log_w.max()
    w = torch.exp(log_w - shift)
    mean = w.mean()
    stderr = float(w.std() / mean / math.sqrt(n)) if n > 1 else float("inf")
    return float(shift + torch.log(mean)), stderr


def ais_schedule(n_betas: int, dtype=EVAL, device="cpu") -> torch.Tensor:
    """Inverse temperatures 0 = beta_0 < ... < beta_n = 1, denser near 1, in the proportions of
    Salakhutdinov & Murray (2008): 1000 steps to 0.5, 4000 to 0.9, 10000 to 1 (out of 14500)."""
    n_betas = max(3, int(n_betas))
    n1 = max(1, round(n_betas * 1000 / 14500))
    n2 = max(1, round(n_betas * 4000 / 14500))
    n3 = n_betas - n1 - n2
    return torch.cat([
        torch.linspace(0.0, 0.5, n1 + 1, dtype=dtype, device=device)[:-1],
        torch.linspace(0.5, 0.9, n2 + 1, dtype=dtype, device=device)[:-1],
        torch.linspace(0.9, 1.0, n3 + 1, dtype=dtype, device=device),
    ])


def base_rate_logits(x: torch.Tensor, pseudo_count: float = 1.0) -> torch.Tensor:
    """Logits of each unit's (smoothed) marginal probability of being on in binary data x (N, D)."""
    p = (x.sum(0) + pseudo_count) / (x.shape[0] + 2 * pseudo_count)
    return torch.log(p) - torch.log1p(-p)


def gibbs_sweep(y: torch.Tensor, couplings: torch.Tensor, biases: torch.Tensor, gen: torch.Generator,
                reverse: bool = False) -> None:
    """One systematic-scan Gibbs sweep of a fully visible Boltzmann machine, in place.

    Unit i is set to 1 with probability sigmoid(couplings[:, i] . y + biases[i]) (couplings
    symmetric with zero diagonal), i.e. when that field plus logistic noise is positive. Units are
    updated in the order 0..D-1, or D-1..0 with ``reverse``: the reversal of a forward sweep (each
    single-unit update is reversible, so the sweep's reversal is the same updates in reverse order).
    """
    u = torch.rand(y.shape, generator=gen, device=y.device, dtype=y.dtype)
    thresholds = biases + torch.log(u) - torch.log1p(-u)
    units = range(y.shape[1] - 1, -1, -1) if reverse else range(y.shape[1])
    for i in units:
        y[:, i] = torch.addmv(thresholds[:, i], y, couplings[:, i]) > 0


class Parameters(torch.nn.Module):
    """Named tensors as buffers, so ``Model.to(device)`` moves them."""

    def __init__(self, **tensors):
        super().__init__()
        for name, value in tensors.items():
            self.register_buffer(name, value)

    def as_dict(self, dtype=None) -> dict:
        return {k: (v if dtype is None else v.to(dtype)) for k, v in self.named_buffers()}


class MomentumAscent:
    """Gradient ascent with momentum; L2 weight decay on the parameters named in ``decayed``."""

    def __init__(self, params: Parameters, momentum: float, weight_decay: float, decayed=("W", "W1", "W2")):
        self.params = params
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.decayed = set(decayed)
        self.velocity = {k: torch.zeros_like(v) for k, v in params.named_buffers()}

    def step(self, grads: dict, lr: float) -> None:
        for name, grad in grads.items():
            param = getattr(self.params, name)
            if name in self.decayed and self.weight_decay:
                grad = grad - self.weight_decay * param
            vel = self.velocity[name]
            vel.mul_(self.momentum).add_(grad, alpha=lr)
            param.add_(vel)


def rbm_gradients(W, vbias, hbias, v_data, v_model, k, gen, up=1.0, down=1.0, monitor=False):
    """CD-k / PCD-k statistics of an RBM: (ascent directions, last model visibles, reconstruction error).

    ``v_model`` starts the negative chain (the data for CD, persistent chains for PCD). ``up`` and
    ``down`` scale the bottom-up and top-down inputs (2 for the doubled layers of DBM pre-training).
    With ``monitor`` the mean squared one-step reconstruction error of the data is computed (a
    progress indicator only; otherwise None).
    """
    ph_data = torch.sigmoid(up * (v_data @ W) + hbias)
    recon = None
    if monitor:
        recon = float(((v_data - torch.sigmoid(down * (ph_data @ W.T) + vbias)) ** 2).sum(1).mean())
    v = v_model
    ph = ph_data if v_model is v_data else torch.sigmoid(up * (v @ W) + hbias)
    for _ in range(max(1, k)):
        v = bernoulli(torch.sigmoid(down * (bernoulli(ph, gen) @ W.T) + vbias), gen)
        ph = torch.sigmoid(up * (v @ W) + hbias)
    grads = {
        "W": v_data.T @ ph_data / len(v_data) - v.T @ ph / len(v),
        "a": v_data.mean(0) - v.mean(0),
        "c": ph_data.mean(0) - ph.mean(0),
    }
    return grads, v, recon
