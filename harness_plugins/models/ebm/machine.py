"""The model the three Boltzmann machines share: data, training batches, log Z, likelihood, sampling.

The model the three Boltzmann machines share: data handling, the training loop's minibatches, the
exported state, the log Z cache, ``log_likelihood``, the RAISE estimate and ``sample``; each machine
supplies its energy-specific parts."""

from __future__ import annotations

import math
from typing import Optional

import torch

from harness import FitContext, LikelihoodKind, Model, Split
from harness.contracts import LogLikelihood
from harness_plugins.models.ebm.common import (EVAL, TRAIN, MomentumAscent, Parameters, ais_schedule, base_rate_logits,
                                               bernoulli, device_generator, flatten, log_mean_exp_with_stderr)


RAISE_SEED_OFFSET = 7919  # keeps the RAISE chains' random stream apart from the AIS chains'


class BoltzmannModel(Model):
    """What the three machines share: hyperparameters, data handling, the log Z cache,
    ``log_likelihood`` and ``sample``. Subclasses supply the energy-specific parts."""

    def __init__(self, spec, hparams: dict):
        self.spec = spec
        self.dim = spec.dim
        self.hp = dict(hparams)
        self.params: Optional[Parameters] = None
        self.base_logits: Optional[torch.Tensor] = None
        self.seed = 0
        self._log_z = None

    # ---- training
    def training_steps(self) -> int:
        """How many ``ctx.step`` calls training makes (pre-training included)."""
        return int(self.hp["steps"])

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        ctx.set_total_steps(self.training_steps())
        x = flatten(train.x).to(self.device, TRAIN)
        gen = device_generator(ctx.generator, self.device)
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

    def _optimizer(self) -> MomentumAscent:
        return MomentumAscent(self.params, float(self.hp["momentum"]), float(self.hp["weight_decay"]))

    def _base_rate_samples(self, n: int, gen: torch.Generator, dtype=TRAIN) -> torch.Tensor:
        return bernoulli(torch.sigmoid(self.base_logits.to(dtype)).expand(n, -1), gen)

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
        self.params = Parameters(**{k: v.to(self.device, TRAIN) for k, v in params.items()})
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
        v = flatten(x)
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
        protocol = {"log_z": partition["log_z_method"], "log_p_unnormalized": how}
        if partition["log_z_method"] == "ais":  # the temperatures and chains set what the estimate means
            protocol.update({"ais_betas": partition.get("betas"), "ais_chains": partition.get("chains")})
        return LogLikelihood(values, LikelihoodKind.EXACT if exact else LikelihoodKind.ESTIMATE,
                             shared_stderr=float(partition["stderr"]), details=details, protocol=protocol)

    # ---- the conservative end: RAISE
    def raise_examples(self, available: int) -> int:
        """On how many of ``available`` evaluation examples RAISE runs (``raise_examples``; 0: all)."""
        wanted = int(self.hp["raise_examples"])
        return available if wanted <= 0 else min(wanted, available)

    def raise_settings(self) -> dict:
        return {"raise_betas": int(self.hp["raise_betas"]), "raise_chains": int(self.hp["raise_chains"])}

    def raise_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Per example v of ``x``, log of an unbiased estimate of p_ann(v) by reverse annealing from v
        (RAISE, Burda, Grosse & Salakhutdinov 2015); float64, shape (N,).

        p_ann is the annealing model: the distribution of the last state of a forward chain that
        starts at the base-rate model and applies the transitions T_1..T_K of the ``raise_betas``
        temperatures (the AIS schedule), T_k leaving the beta_k distribution invariant. Starting at
        v (for the ``dbm``: at h1 drawn from the mean-field posterior r(h1 | v)), the reverse chain
        applies the reversal of T_K, ..., T_1 and collects the weight

            w = p_0(x_0) prod_k f_k(x_k) / f_k(x_{k-1})    (times p(v | h1_K) / r(h1_K | v) for the dbm),

        whose expectation is p_ann(v). The log of an average of ``raise_chains`` such weights is low
        in expectation (Jensen), and p_ann approaches the machine as the schedule lengthens, so
        -log p_hat(v) errs on the pessimistic side where AIS errs on the optimistic one."""
        v = flatten(x).to(self.device, EVAL)
        chains = max(1, int(self.hp["raise_chains"]))
        betas = ais_schedule(int(self.hp["raise_betas"])).tolist()
        gen = torch.Generator(device=self.device).manual_seed(
            int(self.hp["ais_seed"]) + 1_000_003 * self.seed + RAISE_SEED_OFFSET)
        per_pass = max(1, int(self.hp["eval_batch"]) // chains)
        out = []
        for chunk in v.split(per_pass):
            log_w = self._raise_log_weights(chunk.repeat_interleave(chains, 0), betas, gen)
            out.append(torch.logsumexp(log_w.reshape(len(chunk), chains), 1) - math.log(chains))
        return torch.cat(out) if out else torch.zeros(0, dtype=EVAL)

    # ---- sampling
    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        gen = device_generator(generator, self.device)
        v = self._gibbs_sample(n, int(self.hp["sample_burn_in"]), gen)
        return v.float().cpu().reshape(n, *self.spec.event_shape)

    # ---- supplied by subclasses
    def _init_params(self, x, gen):  # pragma: no cover - interface
        raise NotImplementedError

    def _parameter_shapes(self) -> dict:  # name -> shape of each energy parameter
        raise NotImplementedError  # pragma: no cover - interface

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

    def _raise_log_weights(self, v, betas, gen) -> torch.Tensor:  # log RAISE weights (N,) for visibles v (N, D)
        raise NotImplementedError  # pragma: no cover - interface

    def _gibbs_sample(self, n, sweeps, gen):  # pragma: no cover - interface
        raise NotImplementedError
