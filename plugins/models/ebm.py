"""Energy-based models on binary data: Boltzmann machines with Gibbs sampling and estimated log Z.

Three models, family ``ebm``, all on 0/1 data (images are flattened to D visible units). Each
defines an unnormalised log-probability log p*(v) = log sum_h exp(-E(v, h)):

``boltzmann``  fully visible:  E(v) = -1/2 v^T W v - b^T v   (W symmetric, zero diagonal)
``rbm``        restricted:     E(v, h) = -v^T W h - a^T v - c^T h
``dbm``        deep, 2 layers: E(v, h1, h2) = -v^T W1 h1 - h1^T W2 h2 - a^T v - b1^T h1 - b2^T h2

Training is maximum likelihood by stochastic gradient ascent with momentum; the gradient is a data
expectation minus a model expectation of the sufficient statistics. The model term comes from
Gibbs chains: persistent chains (PCD) for ``boltzmann`` and ``dbm``, CD-k or PCD for ``rbm``
(hparam ``training``). The ``dbm`` is pre-trained greedily as two RBMs with the doubling trick of
Salakhutdinov & Hinton (2009), then trained jointly with a mean-field data term. Sampling runs
Gibbs chains from the base-rate model for ``sample_burn_in`` sweeps: systematic-scan single-unit
sweeps (``boltzmann``), block Gibbs v <-> h (``rbm``), alternating odd {v, h2} / even {h1} layers
(``dbm``).

Log-likelihood: log p(v) = log p*(v) - log Z, in nats.

* log Z is exact (kind ``exact``) when a sum over at most 2^``exact_max_units`` states suffices:
  all visible states of a small ``boltzmann``; the hidden states of an ``rbm`` (visibles summed out
  analytically; or its visible states if D is the smaller); the h1 states of a ``dbm`` (v and h2
  are conditionally independent given h1, so both are summed out analytically).
* Otherwise log Z is estimated by annealed importance sampling (Salakhutdinov & Murray 2008) from
  the base-rate model (independent units whose biases match the training marginals) with
  ``ais_betas`` temperatures and ``ais_chains`` chains; the ``dbm`` anneals the marginal over h1
  (v and h2 summed out analytically, as for its exact log Z). The estimate is log mean exp of the
  importance weights; its standard error (delta method: std(w) / mean(w) / sqrt(chains)) is the
  LogLikelihood's ``shared_stderr`` and the kind is ``estimate``. The log of an unbiased estimate
  of Z is biased low, and with too few temperatures the weights are heavy-tailed and the delta
  method understates the error, so log p(v) estimates err on the optimistic side.
* log p*(v) is exact for ``boltzmann`` and ``rbm``. For ``dbm`` it is exact by enumerating the
  smaller hidden layer when that has at most ``exact_max_units`` units; otherwise it is the
  mean-field lower bound, and the reported value is that bound minus the AIS log Z, as in
  Salakhutdinov & Hinton (2009); ``details["log_p_unnormalized"]`` says which.

Hyperparameters (declared with their documentation at the end of this module): the shared
:data:`COMMON` ones (``steps``, ``batch_size``, ``lr`` (decays linearly to 0), ``momentum``,
``weight_decay``, ``init_scale``, ``chains``, ``exact_max_units``, ``ais_betas``, ``ais_chains``,
``ais_seed``, ``sample_burn_in``, ``eval_batch``) and each machine's own: ``boltzmann``:
``sweeps_per_step``; ``rbm``: ``hidden``, ``training`` ("cd" or "pcd"), ``k``; ``dbm``: ``hidden1``,
``hidden2``, ``pretrain_steps`` (per layer), ``pretrain_lr``, ``pretrain_momentum``, ``k``,
``mean_field_iters``, ``eval_mean_field_iters``, ``chain_burn_in``. Rules for ``digits-binary`` give
its 64 visible units a small machine whose log Z is exact, while MNIST gets a larger one estimated
by AIS.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from harness import Capability, DataKind, FitContext, Hyperparameters, LikelihoodKind, Model, ModelSpec, Split, hookimpl
from harness.contracts import LogLikelihood

LOG2 = math.log(2.0)
EVAL = torch.float64  # dtype for log Z, AIS and log-likelihoods
TRAIN = torch.float32  # dtype for training and sampling
ENUMERATION_CHUNK_ELEMENTS = 2 ** 22  # bound on the tensor size of one chunk of enumerated states
MONITOR_EVERY = 10  # training steps between progress scalars (reconstruction error, pseudo-NLL)


# --------------------------------------------------------------------------- helpers


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _device_generator(source: torch.Generator, device) -> torch.Generator:
    """A generator on ``device`` seeded from ``source`` (reproducible from the job's seed)."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=source))
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def _bernoulli(probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(probs.shape, generator=gen, device=probs.device, dtype=probs.dtype) < probs).to(probs.dtype)


def _binary_entropy(mu: torch.Tensor) -> torch.Tensor:
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


def gibbs_sweep(y: torch.Tensor, couplings: torch.Tensor, biases: torch.Tensor, gen: torch.Generator) -> None:
    """One systematic-scan Gibbs sweep of a fully visible Boltzmann machine, in place.

    Unit i is set to 1 with probability sigmoid(couplings[:, i] . y + biases[i]) (couplings
    symmetric with zero diagonal), i.e. when that field plus logistic noise is positive.
    """
    u = torch.rand(y.shape, generator=gen, device=y.device, dtype=y.dtype)
    thresholds = biases + torch.log(u) - torch.log1p(-u)
    for i in range(y.shape[1]):
        y[:, i] = torch.addmv(thresholds[:, i], y, couplings[:, i]) > 0


class _Parameters(torch.nn.Module):
    """Named tensors as buffers, so ``Model.to(device)`` moves them."""

    def __init__(self, **tensors):
        super().__init__()
        for name, value in tensors.items():
            self.register_buffer(name, value)

    def as_dict(self, dtype=None) -> dict:
        return {k: (v if dtype is None else v.to(dtype)) for k, v in self.named_buffers()}


class _MomentumAscent:
    """Gradient ascent with momentum; L2 weight decay on the parameters named in ``decayed``."""

    def __init__(self, params: _Parameters, momentum: float, weight_decay: float, decayed=("W", "W1", "W2")):
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
        v = _bernoulli(torch.sigmoid(down * (_bernoulli(ph, gen) @ W.T) + vbias), gen)
        ph = torch.sigmoid(up * (v @ W) + hbias)
    grads = {
        "W": v_data.T @ ph_data / len(v_data) - v.T @ ph / len(v),
        "a": v_data.mean(0) - v.mean(0),
        "c": ph_data.mean(0) - ph.mean(0),
    }
    return grads, v, recon


# --------------------------------------------------------------------------- the shared model


class _BoltzmannModel(Model):
    """What the three machines share: hyperparameters, data handling, the log Z cache,
    ``log_likelihood`` and ``sample``. Subclasses supply the energy-specific parts."""

    def __init__(self, spec, hparams: dict):
        self.spec = spec
        self.dim = spec.dim
        self.hp = dict(hparams)
        self.params: Optional[_Parameters] = None
        self.base_logits: Optional[torch.Tensor] = None
        self.seed = 0
        self._log_z = None

    # ---- training
    def training_steps(self) -> int:
        """How many ``ctx.step`` calls training makes (pre-training included)."""
        return int(self.hp["steps"])

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        ctx.set_total_steps(self.training_steps())
        x = _flatten(train.x).to(self.device, TRAIN)
        gen = _device_generator(ctx.generator, self.device)
        self.seed = ctx.seed
        self.base_logits = base_rate_logits(x)
        self._log_z = None
        self._init_params(x, gen)
        self._train(x, ctx, gen)

    def _minibatches(self, x: torch.Tensor, steps: int, ctx: FitContext, gen: torch.Generator, lr=None):
        """Yield (step, batch, learning rate) for up to ``steps`` steps, stopping early when the
        context says so; the rate decays linearly to 0. Progress scalars are computed on every
        ``MONITOR_EVERY``-th step only."""
        size = min(int(self.hp["batch_size"]), len(x))
        lr = float(self.hp["lr"] if lr is None else lr)
        for step in range(steps):
            if ctx.should_stop():
                return
            idx = torch.randint(0, len(x), (size,), generator=gen, device=x.device)
            yield step, x[idx], lr * (1 - step / steps)

    def _optimizer(self) -> _MomentumAscent:
        return _MomentumAscent(self.params, float(self.hp["momentum"]), float(self.hp["weight_decay"]))

    def _base_rate_samples(self, n: int, gen: torch.Generator, dtype=TRAIN) -> torch.Tensor:
        return _bernoulli(torch.sigmoid(self.base_logits.to(dtype)).expand(n, -1), gen)

    # ---- state
    def export_state(self) -> dict:
        """The energy's parameters (``params.W`` ...), the base-rate logits AIS starts from, and the
        fitted seed (it seeds the AIS estimate of log Z, so a restored machine gives the same
        estimate). The persistent training chains are not needed to sample or score."""
        if self.params is None:
            raise ValueError(f"{type(self).__name__} has not been fitted")
        state = {f"params.{k}": v.detach().cpu() for k, v in self.params.named_buffers()}
        state["base_logits"] = self.base_logits.detach().cpu()
        state["seed"] = torch.tensor(int(self.seed), dtype=torch.int64)
        return state

    def restore_state(self, state) -> None:
        keys = set(state)
        expected = {"base_logits", "seed"}
        params = {k[len("params."):]: v for k, v in state.items() if k.startswith("params.")}
        unexpected = keys - expected - {f"params.{k}" for k in params}
        if unexpected or not expected <= keys or not params:
            raise KeyError(f"{type(self).__name__} state needs params.*, base_logits and seed; got "
                           f"{', '.join(sorted(keys)) or 'nothing'}")
        self.params = _Parameters(**{k: v.to(self.device, TRAIN) for k, v in params.items()})
        self._check_restored()
        if tuple(state["base_logits"].shape) != (self.dim,):
            raise ValueError(f"{type(self).__name__} base_logits must have shape ({self.dim},), not "
                             f"{tuple(state['base_logits'].shape)}")
        self.base_logits = state["base_logits"].to(self.device, TRAIN)
        self.seed = int(state["seed"])
        self._log_z = None

    def _check_restored(self) -> None:
        """Raise if the restored parameters do not fit this machine's dimension and hyperparameters."""
        names = sorted(self.params.as_dict())
        wanted = sorted(self._parameter_shapes())
        if names != wanted:
            raise KeyError(f"{type(self).__name__} parameters are {', '.join(wanted)}; got {', '.join(names)}")
        for name, shape in self._parameter_shapes().items():
            got = tuple(getattr(self.params, name).shape)
            if got != shape:
                raise ValueError(f"{type(self).__name__} parameter {name} must have shape {shape}, not {got}")

    def _parameter_shapes(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    # ---- likelihood
    def log_partition(self, method: Optional[str] = None) -> dict:
        """log Z and how it was obtained: ``{"log_z", "stderr", "log_z_method", ...}``.

        ``method`` None picks exact enumeration when it is tractable (``exact_max_units``) and AIS
        otherwise, and caches the answer until the next fit; ``"exact"`` or ``"ais"`` force one
        (uncached; ``"exact"`` raises ValueError when it is intractable).
        """
        if method is None:
            if self._log_z is None:
                self._log_z = self.log_partition("exact" if self._exact_log_z_tractable() else "ais")
            return self._log_z
        if method == "exact":
            exact = self._exact_log_z()
            if exact is None:
                raise ValueError(f"exact log Z is intractable for {type(self).__name__} with "
                                 f"exact_max_units={self.hp['exact_max_units']}")
            return {"log_z": float(exact), "stderr": 0.0, "log_z_method": "exact"}
        if method == "ais":
            gen = torch.Generator(device=self.device).manual_seed(int(self.hp["ais_seed"]) + 1_000_003 * self.seed)
            betas = ais_schedule(int(self.hp["ais_betas"])).tolist()
            chains = int(self.hp["ais_chains"])
            log_w, log_z_base = self._ais_log_weights(betas, chains, gen)
            log_ratio, stderr = log_mean_exp_with_stderr(log_w)
            return {"log_z": log_z_base + log_ratio, "stderr": stderr, "log_z_method": "ais",
                    "betas": len(betas) - 1, "chains": chains, "log_z_base_rate": log_z_base}
        raise ValueError(f"log Z method must be None, 'exact' or 'ais', not {method!r}")

    def log_likelihood(self, x: torch.Tensor, labels=None) -> LogLikelihood:
        partition = self.log_partition()
        params = self.params.as_dict(EVAL)
        v = _flatten(x)
        parts, how = [], None
        for chunk in v.split(int(self.hp["eval_batch"])):
            values, how = self._log_unnormalized(chunk.to(self.device, EVAL), params)
            parts.append(values)
        values = (torch.cat(parts) - partition["log_z"]).float().cpu()
        exact = partition["log_z_method"] == "exact" and how == "exact"
        details = {k: v for k, v in partition.items() if k != "stderr"}
        details["log_z_stderr"] = partition["stderr"]
        details["log_p_unnormalized"] = how
        if how == "mean-field lower bound":
            details["note"] = "mean-field lower bound on log p*(v) minus the AIS estimate of log Z"
        return LogLikelihood(values, LikelihoodKind.EXACT if exact else LikelihoodKind.ESTIMATE,
                             shared_stderr=float(partition["stderr"]), details=details)

    # ---- sampling
    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        gen = _device_generator(generator, self.device)
        v = self._gibbs_sample(n, int(self.hp["sample_burn_in"]), gen)
        return v.float().cpu().reshape(n, *self.spec.event_shape)

    # ---- supplied by subclasses
    def _init_params(self, x, gen):  # pragma: no cover - interface
        raise NotImplementedError

    def _train(self, x, ctx, gen):  # pragma: no cover - interface
        raise NotImplementedError

    def _log_unnormalized(self, v, params) -> tuple:  # (values (N,), "exact" or how it was bounded)
        raise NotImplementedError  # pragma: no cover - interface

    def _exact_log_z(self) -> Optional[float]:  # None when intractable
        raise NotImplementedError  # pragma: no cover - interface

    def _exact_log_z_tractable(self) -> bool:
        raise NotImplementedError  # pragma: no cover - interface

    def _ais_log_weights(self, betas, chains, gen) -> tuple:  # (log weights (chains,), log Z of the base)
        raise NotImplementedError  # pragma: no cover - interface

    def _gibbs_sample(self, n, sweeps, gen):  # pragma: no cover - interface
        raise NotImplementedError


# --------------------------------------------------------------------------- fully visible


class FullyVisibleBoltzmann(_BoltzmannModel):
    """Fully visible Boltzmann machine, PCD with systematic-scan Gibbs sweeps."""

    def _init_params(self, x, gen):
        d = self.dim
        self.params = _Parameters(W=torch.zeros(d, d, dtype=TRAIN, device=self.device),
                                  b=self.base_logits.clone())
        self.chains = self._base_rate_samples(int(self.hp["chains"]), gen)

    def _parameter_shapes(self) -> dict:
        return {"W": (self.dim, self.dim), "b": (self.dim,)}

    def set_parameters(self, W: torch.Tensor, b: torch.Tensor, base_logits: Optional[torch.Tensor] = None) -> None:
        """Use given parameters (W is symmetrised and its diagonal zeroed) instead of training."""
        W = (W + W.T) / 2
        W = W - torch.diag(torch.diagonal(W))
        self.params = _Parameters(W=W.to(self.device, TRAIN), b=b.to(self.device, TRAIN))
        self.base_logits = (b if base_logits is None else base_logits).to(self.device, TRAIN)
        self._log_z = None

    def _train(self, x, ctx, gen):
        opt = self._optimizer()
        p = self.params
        for step, batch, lr in self._minibatches(x, int(self.hp["steps"]), ctx, gen):
            for _ in range(int(self.hp["sweeps_per_step"])):
                gibbs_sweep(self.chains, p.W, p.b, gen)
            scalars = {}
            if step % MONITOR_EVERY == 0:
                fields = batch @ p.W + p.b
                scalars["pseudo_nll"] = float((F.softplus(fields) - batch * fields).sum(1).mean())
            corr = batch.T @ batch / len(batch) - self.chains.T @ self.chains / len(self.chains)
            corr.fill_diagonal_(0)
            opt.step({"W": corr, "b": batch.mean(0) - self.chains.mean(0)}, lr)
            ctx.step(len(batch), **scalars)

    @staticmethod
    def _negative_energy(y, W, b):
        return 0.5 * ((y @ W) * y).sum(-1) + y @ b

    def _log_unnormalized(self, v, params):
        return self._negative_energy(v, params["W"], params["b"]), "exact"

    def _exact_log_z_tractable(self):
        return self.dim <= int(self.hp["exact_max_units"])

    def _exact_log_z(self):
        if not self._exact_log_z_tractable():
            return None
        p = self.params.as_dict(EVAL)
        return logsumexp_over_states(self.dim, lambda s: self._negative_energy(s, p["W"], p["b"]), 2 * self.dim,
                                     EVAL, self.device)

    def _ais_log_weights(self, betas, chains, gen):
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)
        y = self._base_rate_samples(chains, gen, EVAL)
        log_w = torch.zeros(chains, dtype=EVAL, device=self.device)
        for k in range(1, len(betas)):
            # log f_k(y) = beta_k (1/2 y'Wy + b'y) + (1 - beta_k) base'y
            log_w += (betas[k] - betas[k - 1]) * self._negative_energy(y, p["W"], p["b"] - base)
            if k < len(betas) - 1:
                beta = betas[k]
                gibbs_sweep(y, beta * p["W"], beta * p["b"] + (1 - beta) * base, gen)
        return log_w, float(F.softplus(base).sum())

    def _gibbs_sample(self, n, sweeps, gen):
        y = self._base_rate_samples(n, gen)
        for _ in range(sweeps):
            gibbs_sweep(y, self.params.W, self.params.b, gen)
        return y


# --------------------------------------------------------------------------- restricted


class RestrictedBoltzmann(_BoltzmannModel):
    """RBM trained by CD-k or PCD-k; block Gibbs sampling."""

    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        if self.hp["training"] not in ("cd", "pcd"):
            raise ValueError(f"rbm training must be 'cd' or 'pcd', not {self.hp['training']!r}")

    def _init_params(self, x, gen):
        h = int(self.hp["hidden"])
        W = float(self.hp["init_scale"]) * torch.randn(self.dim, h, generator=gen, device=self.device, dtype=TRAIN)
        self.params = _Parameters(W=W, a=self.base_logits.clone(), c=torch.zeros(h, dtype=TRAIN, device=self.device))
        self.chains = self._base_rate_samples(int(self.hp["chains"]), gen)

    def _parameter_shapes(self) -> dict:
        h = int(self.hp["hidden"])
        return {"W": (self.dim, h), "a": (self.dim,), "c": (h,)}

    def set_parameters(self, W, a, c, base_logits=None) -> None:
        """Use given parameters (W: visible x hidden) instead of training."""
        self.hp["hidden"] = W.shape[1]
        self.params = _Parameters(W=W.to(self.device, TRAIN), a=a.to(self.device, TRAIN), c=c.to(self.device, TRAIN))
        self.base_logits = (a if base_logits is None else base_logits).to(self.device, TRAIN)
        self._log_z = None

    def _train(self, x, ctx, gen):
        opt = self._optimizer()
        p = self.params
        persistent = self.hp["training"] == "pcd"
        for step, batch, lr in self._minibatches(x, int(self.hp["steps"]), ctx, gen):
            start = self.chains if persistent else batch
            grads, v_model, recon = rbm_gradients(p.W, p.a, p.c, batch, start, int(self.hp["k"]), gen,
                                                  monitor=step % MONITOR_EVERY == 0)
            if persistent:
                self.chains = v_model
            opt.step(grads, lr)
            ctx.step(len(batch), **({"recon": recon} if recon is not None else {}))

    def _log_unnormalized(self, v, params):
        return v @ params["a"] + F.softplus(v @ params["W"] + params["c"]).sum(1), "exact"

    def _exact_log_z_tractable(self):
        return min(self.dim, self.params.W.shape[1]) <= int(self.hp["exact_max_units"])

    def _exact_log_z(self):
        limit = int(self.hp["exact_max_units"])
        p = self.params.as_dict(EVAL)
        n_hidden = p["W"].shape[1]
        if n_hidden <= limit and n_hidden <= self.dim:
            return logsumexp_over_states(
                n_hidden, lambda h: h @ p["c"] + F.softplus(h @ p["W"].T + p["a"]).sum(1), 2 * self.dim,
                EVAL, self.device)
        if self.dim <= limit:
            return logsumexp_over_states(self.dim, lambda v: self._log_unnormalized(v, p)[0], 2 * n_hidden,
                                         EVAL, self.device)
        return None

    def _ais_log_weights(self, betas, chains, gen):
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)
        v = self._base_rate_samples(chains, gen, EVAL)
        log_w = torch.zeros(chains, dtype=EVAL, device=self.device)
        for k in range(1, len(betas)):
            # log f_k(v) = (1 - beta_k) base'v + beta_k a'v + sum_j softplus(beta_k (c + vW)_j)
            beta, previous = betas[k], betas[k - 1]
            x = v @ p["W"] + p["c"]
            log_w += (beta - previous) * (v @ (p["a"] - base)) + (F.softplus(beta * x) - F.softplus(previous * x)).sum(1)
            if k < len(betas) - 1:
                h = _bernoulli(torch.sigmoid(beta * x), gen)
                v = _bernoulli(torch.sigmoid((1 - beta) * base + beta * (h @ p["W"].T + p["a"])), gen)
        # at beta = 0 the hidden units are free: Z_0 = 2^H prod_i (1 + exp(base_i))
        return log_w, p["W"].shape[1] * LOG2 + float(F.softplus(base).sum())

    def _gibbs_sample(self, n, sweeps, gen):
        p = self.params
        v = self._base_rate_samples(n, gen)
        for _ in range(sweeps):
            h = _bernoulli(torch.sigmoid(v @ p.W + p.c), gen)
            v = _bernoulli(torch.sigmoid(h @ p.W.T + p.a), gen)
        return v


# --------------------------------------------------------------------------- deep


class DeepBoltzmann(_BoltzmannModel):
    """Two-hidden-layer DBM: greedy pre-training (doubling trick), then PCD with mean-field."""

    def training_steps(self) -> int:
        """Two pre-training phases of ``pretrain_steps`` (none when it is 0), then ``steps`` joint steps."""
        return 2 * max(int(self.hp["pretrain_steps"]), 0) + int(self.hp["steps"])

    def _init_params(self, x, gen):
        h1, h2 = int(self.hp["hidden1"]), int(self.hp["hidden2"])
        kw = dict(dtype=TRAIN, device=self.device)
        self.params = _Parameters(
            W1=float(self.hp["init_scale"]) * torch.randn(self.dim, h1, generator=gen, **kw),
            W2=float(self.hp["init_scale"]) * torch.randn(h1, h2, generator=gen, **kw),
            a=self.base_logits.clone(), b1=torch.zeros(h1, **kw), b2=torch.zeros(h2, **kw))

    def _parameter_shapes(self) -> dict:
        h1, h2 = int(self.hp["hidden1"]), int(self.hp["hidden2"])
        return {"W1": (self.dim, h1), "W2": (h1, h2), "a": (self.dim,), "b1": (h1,), "b2": (h2,)}

    def set_parameters(self, W1, W2, a, b1, b2, base_logits=None) -> None:
        """Use given parameters (W1: visible x h1, W2: h1 x h2) instead of training."""
        self.hp["hidden1"], self.hp["hidden2"] = W2.shape
        self.params = _Parameters(**{k: t.to(self.device, TRAIN) for k, t in
                                     dict(W1=W1, W2=W2, a=a, b1=b1, b2=b2).items()})
        self.base_logits = (a if base_logits is None else base_logits).to(self.device, TRAIN)
        self._log_z = None

    # ---- training
    def _pretrain(self, x, ctx, gen):
        """Greedy layer-wise pre-training: RBM(v, h1) with doubled bottom-up input, then
        RBM(h1, h2) on its hidden probabilities with doubled top-down input (Salakhutdinov & Hinton
        2009). The hidden biases of the first and visible biases of the second are averaged into b1."""
        p = self.params
        steps = int(self.hp["pretrain_steps"])
        if steps <= 0:
            return
        lr0, momentum = float(self.hp["pretrain_lr"]), float(self.hp["pretrain_momentum"])
        first = _Parameters(W=p.W1.clone(), a=p.a.clone(), c=p.b1.clone())
        opt = _MomentumAscent(first, momentum, float(self.hp["weight_decay"]))
        for step, batch, lr in self._minibatches(x, steps, ctx, gen, lr0):
            grads, _, recon = rbm_gradients(first.W, first.a, first.c, batch, batch, 1, gen, up=2.0,
                                            monitor=step % MONITOR_EVERY == 0)
            opt.step(grads, lr)
            ctx.step(len(batch), **({"recon": recon} if recon is not None else {}))
        second = _Parameters(W=p.W2.clone(), a=torch.zeros_like(p.b1), c=p.b2.clone())
        opt = _MomentumAscent(second, momentum, float(self.hp["weight_decay"]))
        for step, batch, lr in self._minibatches(x, steps, ctx, gen, lr0):
            h1 = _bernoulli(torch.sigmoid(2 * (batch @ first.W) + first.c), gen)
            grads, _, recon = rbm_gradients(second.W, second.a, second.c, h1, h1, 1, gen, down=2.0,
                                            monitor=step % MONITOR_EVERY == 0)
            opt.step(grads, lr)
            ctx.step(len(batch), **({"recon_h1": recon} if recon is not None else {}))
        p.W1.copy_(first.W)
        p.a.copy_(first.a)
        p.b1.copy_((first.c + second.a) / 2)
        p.W2.copy_(second.W)
        p.b2.copy_(second.c)

    def mean_field(self, v, params, iters, tol=0.0):
        """Fully factorised q(h1) q(h2) maximising the variational bound for visibles v: alternate
        the exact block updates mu1 <- sigmoid(v W1 + W2 mu2 + b1), mu2 <- sigmoid(mu1 W2 + b2),
        starting from the doubled bottom-up pass."""
        v_w1 = v @ params["W1"]
        bottom_up = v_w1 + params["b1"]
        mu1 = torch.sigmoid(bottom_up + v_w1)
        mu2 = torch.sigmoid(mu1 @ params["W2"] + params["b2"])
        for _ in range(iters):
            new_mu1 = torch.sigmoid(bottom_up + mu2 @ params["W2"].T)
            mu2 = torch.sigmoid(new_mu1 @ params["W2"] + params["b2"])
            change = float((new_mu1 - mu1).abs().max())
            mu1 = new_mu1
            if change < tol:
                break
        return mu1, mu2

    def _train(self, x, ctx, gen):
        self._pretrain(x, ctx, gen)
        p = self.params
        n = int(self.hp["chains"])
        v = self._base_rate_samples(n, gen)
        h1 = _bernoulli(torch.sigmoid(2 * (v @ p.W1) + p.b1), gen)
        h2 = _bernoulli(torch.sigmoid(h1 @ p.W2 + p.b2), gen)
        for _ in range(int(self.hp["chain_burn_in"])):  # bring the chains near the pre-trained model
            v, h1, h2 = self._gibbs_step(v, h1, h2, gen)
        opt = self._optimizer()
        for step, batch, lr in self._minibatches(x, int(self.hp["steps"]), ctx, gen):
            params = self.params.as_dict()
            mu1, mu2 = self.mean_field(batch, params, int(self.hp["mean_field_iters"]))
            for _ in range(int(self.hp["k"])):
                v, h1, h2 = self._gibbs_step(v, h1, h2, gen)
            grads = {
                "W1": batch.T @ mu1 / len(batch) - v.T @ h1 / n,
                "W2": mu1.T @ mu2 / len(batch) - h1.T @ h2 / n,
                "a": batch.mean(0) - v.mean(0),
                "b1": mu1.mean(0) - h1.mean(0),
                "b2": mu2.mean(0) - h2.mean(0),
            }
            scalars = {}
            if step % MONITOR_EVERY == 0:
                scalars["recon"] = float(((batch - torch.sigmoid(mu1 @ p.W1.T + p.a)) ** 2).sum(1).mean())
            opt.step(grads, lr)
            ctx.step(len(batch), **scalars)

    def _gibbs_step(self, v, h1, h2, gen):
        """One alternating Gibbs step: the odd layers {v, h2} given h1, then h1 given {v, h2}."""
        p = self.params
        v = _bernoulli(torch.sigmoid(h1 @ p.W1.T + p.a), gen)
        h2 = _bernoulli(torch.sigmoid(h1 @ p.W2 + p.b2), gen)
        h1 = _bernoulli(torch.sigmoid(v @ p.W1 + h2 @ p.W2.T + p.b1), gen)
        return v, h1, h2

    # ---- likelihood
    def _log_unnormalized(self, v, params):
        limit = int(self.hp["exact_max_units"])
        n1, n2 = params["W2"].shape
        visible = v @ params["a"]
        bottom_up = v @ params["W1"]  # (N, h1)
        if n1 <= limit and n1 <= n2:  # sum h2 analytically, enumerate h1
            def log_weight(h1):
                per_state = h1 @ params["b1"] + F.softplus(h1 @ params["W2"] + params["b2"]).sum(1)
                return bottom_up @ h1.T + per_state
            return visible + logsumexp_over_states(n1, log_weight, len(v) + n2, EVAL, v.device), "exact"
        if n2 <= limit:  # sum h1 analytically, enumerate h2
            def log_weight(h2):
                inputs = (bottom_up + params["b1"])[:, None, :] + (h2 @ params["W2"].T)[None]
                return h2 @ params["b2"] + F.softplus(inputs).sum(-1)
            return visible + logsumexp_over_states(n2, log_weight, len(v) * n1, EVAL, v.device), "exact"
        mu1, mu2 = self.mean_field(v, params, int(self.hp["eval_mean_field_iters"]), tol=1e-7)
        bound = (visible + (bottom_up * mu1).sum(1) + ((mu1 @ params["W2"]) * mu2).sum(1)
                 + mu1 @ params["b1"] + mu2 @ params["b2"] + _binary_entropy(mu1) + _binary_entropy(mu2))
        return bound, "mean-field lower bound"

    def _exact_log_z_tractable(self):
        return self.params.W2.shape[0] <= int(self.hp["exact_max_units"])

    def _exact_log_z(self):
        if not self._exact_log_z_tractable():
            return None
        p = self.params.as_dict(EVAL)
        n1, n2 = p["W2"].shape

        def log_weight(h1):  # v and h2 are independent given h1: both summed out analytically
            return (h1 @ p["b1"] + F.softplus(h1 @ p["W1"].T + p["a"]).sum(1)
                    + F.softplus(h1 @ p["W2"] + p["b2"]).sum(1))
        return logsumexp_over_states(n1, log_weight, 2 * (self.dim + n2), EVAL, self.device)

    def _ais_log_weights(self, betas, chains, gen):
        """AIS on the marginal over h1, with v and h2 summed out analytically:
        log f_beta(h1) = beta b1'h1 + sum_i softplus((1-beta) base_i + beta (a + W1 h1)_i)
                         + sum_k softplus(beta (b2 + h1 W2)_k);
        at beta = 0 h1 is uniform and Z_0 = 2^(h1 + h2) prod_i (1 + exp(base_i))."""
        p = self.params.as_dict(EVAL)
        base = self.base_logits.to(EVAL)
        n1, n2 = p["W2"].shape
        h1 = _bernoulli(torch.full((chains, n1), 0.5, dtype=EVAL, device=self.device), gen)
        log_w = torch.zeros(chains, dtype=EVAL, device=self.device)

        def log_f(beta, h1, x_v, x_2):
            return (beta * (h1 @ p["b1"]) + F.softplus((1 - beta) * base + beta * x_v).sum(1)
                    + F.softplus(beta * x_2).sum(1))

        for k in range(1, len(betas)):
            beta = betas[k]
            x_v = h1 @ p["W1"].T + p["a"]
            x_2 = h1 @ p["W2"] + p["b2"]
            log_w += log_f(beta, h1, x_v, x_2) - log_f(betas[k - 1], h1, x_v, x_2)
            if k < len(betas) - 1:
                v = _bernoulli(torch.sigmoid((1 - beta) * base + beta * x_v), gen)
                h2 = _bernoulli(torch.sigmoid(beta * x_2), gen)
                h1 = _bernoulli(torch.sigmoid(beta * (v @ p["W1"] + h2 @ p["W2"].T + p["b1"])), gen)
        log_z_base = (n1 + n2) * LOG2 + float(F.softplus(base).sum())
        return log_w, log_z_base

    def _gibbs_sample(self, n, sweeps, gen):
        p = self.params
        v = self._base_rate_samples(n, gen)
        h2 = _bernoulli(torch.full((n, p.W2.shape[1]), 0.5, dtype=TRAIN, device=self.device), gen)
        h1 = _bernoulli(torch.sigmoid(v @ p.W1 + h2 @ p.W2.T + p.b1), gen)
        for _ in range(sweeps):
            v, h1, h2 = self._gibbs_step(v, h1, h2, gen)
        return v


# --------------------------------------------------------------------------- hyperparameters


COMMON = {
    "steps": 500, "batch_size": 100, "lr": 0.1, "momentum": 0.5, "weight_decay": 1e-4, "init_scale": 0.01,
    "chains": 100, "exact_max_units": 20, "ais_betas": 2000, "ais_chains": 100, "ais_seed": 0,
    "sample_burn_in": 500, "eval_batch": 500,
}
DOCS = {
    "steps": "training steps (joint steps for the dbm; fewer if the job's deadline comes first)",
    "batch_size": "training examples per step",
    "lr": "learning rate, decaying linearly to 0",
    "momentum": "momentum of the gradient ascent",
    "weight_decay": "L2 weight decay on the couplings",
    "init_scale": "standard deviation of the initial weights",
    "chains": "persistent Gibbs chains for the model expectation",
    "exact_max_units": "log Z and log p*(v) are enumerated exactly over at most 2^this states, else AIS",
    "ais_betas": "AIS inverse temperatures",
    "ais_chains": "AIS chains",
    "ais_seed": "seed of the AIS chains (combined with the job's seed)",
    "sample_burn_in": "Gibbs sweeps from the base-rate model before a sample is taken",
    "eval_batch": "examples per pass when evaluating log-likelihoods",
    "sweeps_per_step": "Gibbs sweeps of the persistent chains per training step",
    "hidden": "hidden units",
    "training": "cd (chains restart at the data) or pcd (persistent chains)",
    "k": "Gibbs steps of the negative phase per training step",
    "hidden1": "units of the first hidden layer",
    "hidden2": "units of the second hidden layer",
    "pretrain_steps": "greedy pre-training steps per layer (0: none)",
    "pretrain_lr": "learning rate of pre-training, decaying linearly to 0",
    "pretrain_momentum": "momentum of pre-training",
    "mean_field_iters": "mean-field iterations for the data term of a training step",
    "eval_mean_field_iters": "mean-field iterations at most for the bound on log p*(v) in evaluation",
    "chain_burn_in": "Gibbs steps that bring the persistent chains near the pre-trained model",
}


def _declare(own: dict, profiles: dict, digits_binary: dict, choices=None) -> Hyperparameters:
    """:data:`COMMON` plus the machine's ``own`` keys (which win); ``digits_binary``: per profile, the
    values for the 64-unit digits-binary set (after the profile's)."""
    defaults = {**COMMON, **own}
    return Hyperparameters(
        defaults=defaults,
        docs={k: DOCS[k] for k in defaults},
        profiles=profiles,
        rules=[({"profile": p, "dataset": "digits-binary"}, values) for p, values in digits_binary.items()],
        choices=choices or {},
    )


BOLTZMANN = _declare(
    {"sweeps_per_step": 1},
    profiles={
        "smoke": {"steps": 1000, "ais_betas": 500, "ais_chains": 50, "sample_burn_in": 100},
        "quick": {"steps": 3000, "ais_betas": 3000, "ais_chains": 100, "sample_burn_in": 200},
        "full": {"steps": 20000, "ais_betas": 20000, "ais_chains": 200, "sample_burn_in": 1000},
    },
    digits_binary={},
)
RBM = _declare(
    {"hidden": 100, "training": "pcd", "k": 1},
    profiles={
        "smoke": {"hidden": 16, "steps": 1500, "sample_burn_in": 100, "ais_betas": 300, "ais_chains": 50},
        "quick": {"hidden": 200, "steps": 2500, "sample_burn_in": 100, "ais_betas": 2000, "ais_chains": 100},
        "full": {"hidden": 500, "steps": 50000, "sample_burn_in": 1000, "ais_betas": 14500, "ais_chains": 100},
    },
    digits_binary={
        "quick": {"hidden": 20, "steps": 3000, "sample_burn_in": 200},
        "full": {"hidden": 20, "steps": 20000},
    },
    choices={"training": ["cd", "pcd"]},
)
# Pre-training (CD-1) takes large steps with high momentum; joint PCD needs smaller, less accelerated
# steps, or it undoes what pre-training found.
DBM = _declare(
    {"hidden1": 100, "hidden2": 50, "pretrain_steps": 1500, "pretrain_lr": 0.1, "pretrain_momentum": 0.9,
     "lr": 0.05, "momentum": 0.5, "k": 1, "mean_field_iters": 10, "eval_mean_field_iters": 100,
     "chain_burn_in": 100},
    profiles={
        "smoke": {"hidden1": 16, "hidden2": 8, "pretrain_steps": 500, "steps": 800, "sample_burn_in": 100,
                  "ais_betas": 300, "ais_chains": 50},
        "quick": {"hidden1": 200, "hidden2": 100, "pretrain_steps": 500, "steps": 2000, "sample_burn_in": 100,
                  "ais_betas": 2000, "ais_chains": 100},
        "full": {"hidden1": 500, "hidden2": 1000, "pretrain_steps": 20000, "steps": 100000,
                 "sample_burn_in": 1000, "ais_betas": 20000, "ais_chains": 100},
    },
    digits_binary={
        "quick": {"hidden1": 20, "hidden2": 10, "pretrain_steps": 1500, "sample_burn_in": 200},
        "full": {"hidden1": 20, "hidden2": 20, "pretrain_steps": 5000, "steps": 20000},
    },
)


# --------------------------------------------------------------------------- registration


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="boltzmann",
        family="ebm",
        factory=FullyVisibleBoltzmann,
        data_kinds=[DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.ESTIMATE,
        hyperparameters=BOLTZMANN,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits-binary"],
                          "full": ["digits-binary", "mnist5k-binary"]},
        description="Fully visible Boltzmann machine (pairwise couplings), PCD with Gibbs sweeps; "
                    "log Z exact for <= 20 units, else AIS.",
    ))
    register(ModelSpec(
        name="rbm",
        family="ebm",
        factory=RestrictedBoltzmann,
        data_kinds=[DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.ESTIMATE,
        hyperparameters=RBM,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits-binary", "mnist5k-binary"],
                          "full": ["digits-binary", "mnist5k-binary"]},
        description="Restricted Boltzmann machine, CD-k or PCD (default); log Z exact for <= 20 hidden units, "
                    "else AIS.",
    ))
    register(ModelSpec(
        name="dbm",
        family="ebm",
        factory=DeepBoltzmann,
        data_kinds=[DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.ESTIMATE,
        hyperparameters=DBM,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits-binary", "mnist5k-binary"],
                          "full": ["digits-binary", "mnist5k-binary"]},
        description="Two-hidden-layer deep Boltzmann machine: greedy pre-training, then PCD with mean-field; "
                    "log Z exact for <= 20 units in h1, else AIS; mean-field bound on log p*(v) when both "
                    "hidden layers are large.",
    ))
