"""The duck-typed model: an object from the user's code measured as a :class:`harness.Model`.

The object is one of (decided once, when the adapter is built):

- a ``torch.distributions.Distribution``: ``log_prob(x)``, ``sample((n,))`` / ``rsample((n,))``;
- an object with ``log_prob`` and/or ``generate(n, generator)``, ``sample`` or ``rsample`` of its own
  (the user's ``nn.Module``, an nflows flow);
- a callable whose call without arguments gives one of those (zuko's flows: an ``nn.Module`` whose call
  returns a distribution); it is called anew for every use, so a trained module gives its current
  distribution.

**Sampling**: ``generate(n, generator)`` where the object has it (it is handed the metric's
``torch.Generator``), else ``sample`` (called as ``sample(n)``, or ``sample((n,))`` where that is what it
takes; a distribution always ``sample((n,))``), else ``rsample``, without gradients. Every draw runs inside
``torch.random.fork_rng`` with torch's global generator seeded from the metric's generator, so an object
that draws from torch's global generator gives the same samples for the same seed and leaves the global
state as it was. :meth:`AdaptedModel.reproducibility` checks that: two draws with one seed must agree (an
object that draws from numpy or a generator of its own does not, and its results are marked so).
Samples are a tensor or numpy array (n, *event_shape), or flat rows (n, D), in the dataset's data space;
they become float32.

**Likelihood**: ``log_prob(x)`` on x (n, *event_shape) as the dataset gives it (flat rows (n, D) where
the object only takes those), cast to the floating dtype of a module's parameters; it must give (n,)
values in nats, of the kind the factory, the object or ``--likelihood`` declared. NaN values raise
:class:`AdaptError` (the metric, hence the job, fails with the reason).

**Fit**: with fitting on (``run``), ``fit(train, val)`` is called where the object has it, on the training
and validation examples (tensors on the job's device); a ``fit`` that takes a third argument (or ``ctx``)
also gets the job's :class:`harness.FitContext` (``ctx.should_stop()`` at the job's deadline,
``ctx.step(examples)`` for the training throughput). An ``nn.Module`` is put in training mode for ``fit``
and in evaluation mode for measuring. Without ``fit``, or under ``evaluate``, it is measured as built.

**State**: an ``nn.Module``'s ``state_dict``, else the object's module and tensor attributes, under
``object.``: saved with every artifact, restored by ``evaluate`` and ``run --resume``.
"""

from __future__ import annotations

import inspect
from typing import Optional

import numpy as np
import torch

from harness.contracts import DataKind, LikelihoodKind, LogLikelihood, Model
from harness.contracts.state import export_attributes, restore_attributes

SAMPLERS = ("generate", "sample", "rsample")
PROBE = 8  # samples drawn, examples scored, by the plan-time checks and the seeding check
_SEED = 20_240_601  # the seed of the seeding check's two draws
_PREFIX = "object."


class AdaptError(ValueError):
    """The object does not behave as an adapted model must (the message says how)."""


def _distribution_type():
    from torch.distributions import Distribution

    return Distribution


def _has(obj, name: str) -> bool:
    return callable(getattr(obj, name, None))


def _speaks(obj) -> bool:
    return _has(obj, "log_prob") or any(_has(obj, s) for s in SAMPLERS)


class AdaptedModel(Model):
    """The adapter (see the module doc). ``source``: the reference and version the results record."""

    def __init__(self, obj, dataset_spec, source: str, likelihood: Optional[LikelihoodKind] = None,
                 likelihood_by: Optional[str] = None, fitting: bool = True, samples: bool = True):
        self.object = obj
        self.dataset_spec = dataset_spec
        self.source = source
        self.likelihood = None if likelihood is None else LikelihoodKind(likelihood)
        self.likelihood_by = likelihood_by
        self.fitting = fitting
        self.samples = samples  # False where sampling was found not to work (the plan-time checks)
        self.callable = not _speaks(obj)
        if self.callable:
            if not callable(obj):
                raise AdaptError(f"the factory returned a {type(obj).__name__}, which has neither log_prob nor a way "
                                 f"to sample ({', '.join(SAMPLERS)}) and is not callable")
            target = self.target()
            if not _speaks(target):
                raise AdaptError(f"the factory returned a {type(obj).__name__} with neither log_prob nor a way to sample "
                                 f"({', '.join(SAMPLERS)}); calling it gives a {type(target).__name__}, which has "
                                 "neither either")
        self.fit_note = "not fitted yet"
        self._sample_call = None  # "int" or "shape": how sample / rsample take the count
        self._flat_input = None  # whether log_prob takes flat rows (n, D)
        self._reproducibility = None
        if isinstance(obj, torch.nn.Module):
            obj.eval()

    # ------------------------------------------------------------------ what the object offers
    def target(self):
        """The object that scores and samples: the object itself, or what its call gives."""
        if not self.callable:
            return self.object
        try:
            return self.object()
        except Exception as exc:
            raise AdaptError(f"calling the {type(self.object).__name__} without arguments (to get its "
                             f"distribution) raised {type(exc).__name__}: {exc}") from exc

    @property
    def kind(self) -> str:
        if isinstance(self.object, _distribution_type()):
            return "distribution"
        return "callable" if self.callable else "object"

    def has_log_prob(self) -> bool:
        return _has(self.target(), "log_prob")

    def sampler(self) -> Optional[str]:
        """The method samples come from (see the module doc), or None."""
        if _has(self.object, "generate"):
            return "generate"
        target = self.target()
        return next((s for s in SAMPLERS if _has(target, s)), None)

    # ------------------------------------------------------------------ the Model contract
    def to(self, device) -> "AdaptedModel":
        if isinstance(self.object, torch.nn.Module):
            self.object.to(device)
            self.device = torch.device(device)
        return self

    def modules(self) -> list:
        return [self.object] if isinstance(self.object, torch.nn.Module) else []

    def fit(self, train, val, ctx) -> None:
        method = getattr(self.object, "fit", None)
        if not self.fitting:
            self.fit_note = "none: evaluate measures the object as the factory built it"
            return
        if not callable(method):
            self.fit_note = "none: the object has no fit method, so it is measured as the factory built it"
            return
        module = self.object if isinstance(self.object, torch.nn.Module) else None
        if module is not None:
            module.train()
        args, kwargs = (train.x.to(self.device), val.x.to(self.device)), {}
        passes = _context_parameter(method)
        if passes == "keyword":
            kwargs["ctx"] = ctx
        elif passes == "positional":
            args += (ctx,)
        try:
            method(*args, **kwargs)
        finally:
            if module is not None:
                module.eval()
        self.fit_note = "fit(train, val, ctx)" if passes else "fit(train, val)"

    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        if labels is not None:
            raise AdaptError("an adapted object is unconditional: it cannot draw samples for given labels")
        n = int(n)
        method = self.sampler()
        if method is None:
            raise AdaptError(f"the {type(self.object).__name__} has no way to sample ({', '.join(SAMPLERS)})")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            raw = self._draw(method, n, generator)
        return as_batch(raw, n, self.dataset_spec, f"{method}({n})")

    def _draw(self, method: str, n: int, generator):
        if method == "generate":
            return self.object.generate(n, generator)
        target = self.target()
        call = getattr(target, method)
        if isinstance(target, _distribution_type()) or self._sample_call == "shape":
            return call(torch.Size([n]))
        if self._sample_call == "int":
            return call(n)
        try:
            out, self._sample_call = call(n), "int"
        except TypeError as exc:  # sample(sample_shape), as torch's distributions take it
            try:
                out, self._sample_call = call(torch.Size([n])), "shape"
            except Exception:
                raise exc from None
        return out

    def log_likelihood(self, x: torch.Tensor, labels=None) -> LogLikelihood:
        if labels is not None:
            raise AdaptError("an adapted object is unconditional: it gives no likelihood given labels")
        if self.likelihood is None:
            raise AdaptError("no likelihood kind was declared for this object")
        target = self.target()
        if not _has(target, "log_prob"):
            raise AdaptError(f"the {type(target).__name__} has no log_prob")
        n = x.shape[0]
        values = self.score(x, target)
        nan = torch.isnan(values)
        if nan.any():
            first = int(nan.nonzero()[0])
            raise AdaptError(f"log_prob gave NaN for {int(nan.sum())} of {n} examples (the first is example {first}, "
                             f"x = {x[first].flatten()[:6].tolist()})")
        return LogLikelihood(values, self.likelihood)

    def score(self, x: torch.Tensor, target=None) -> torch.Tensor:
        """``log_prob`` of ``x`` as (n,) real values, NaN and all (see :meth:`log_likelihood`)."""
        return self._log_prob(self.target() if target is None else target, self._input(x))

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.object, torch.nn.Module):
            dtype = next((p.dtype for p in self.object.parameters() if p.is_floating_point()), None)
            if dtype is not None and dtype != x.dtype:
                x = x.to(dtype)
        return x

    def _log_prob(self, target, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        layouts = [self._flat_input] if self._flat_input is not None else \
            ([False, True] if x.dim() > 2 else [False])
        problem = None
        for flat in layouts:
            try:
                values = _values(target.log_prob(x.reshape(n, -1) if flat else x), n)
            except (AdaptError, RuntimeError, ValueError) as exc:
                problem = problem or exc
                continue
            self._flat_input = flat
            return values
        if isinstance(problem, AdaptError):
            raise problem
        raise AdaptError(f"log_prob of {n} examples of shape {tuple(x.shape[1:])} raised {type(problem).__name__}: "
                         f"{problem}") from problem

    def export_state(self) -> dict:
        obj = self.object
        if isinstance(obj, torch.nn.Module):
            state = obj.state_dict()
        elif hasattr(obj, "__dict__"):
            state = export_attributes(obj)
        else:
            state = {}
        return {_PREFIX + k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}

    def restore_state(self, state) -> None:
        sub = {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}
        extra = sorted(k for k in state if not k.startswith(_PREFIX))
        if extra:
            raise KeyError(f"unexpected state {', '.join(extra[:5])} (an adapted object's state is named object.*)")
        if isinstance(self.object, torch.nn.Module):
            self.object.load_state_dict(sub, strict=True)
            self.object.eval()
        elif sub:
            restore_attributes(self.object, sub)
        self.to(self.device)

    # ------------------------------------------------------------------ what the job records
    def reproducibility(self) -> tuple:
        """(whether two draws of :data:`PROBE` samples with one seed agree, what that means)."""
        if self._reproducibility is None:
            first = self.sample(PROBE, torch.Generator().manual_seed(_SEED))
            second = self.sample(PROBE, torch.Generator().manual_seed(_SEED))
            if torch.equal(torch.nan_to_num(first), torch.nan_to_num(second)):
                self._reproducibility = (True, "two draws with the same seed gave the same samples")
            else:
                self._reproducibility = (False, "two draws with the same seed gave different samples: the object "
                                                "draws from a random source the harness does not seed (numpy, a "
                                                "generator of its own), so its sample metrics change from run to "
                                                "run; draw from torch's global generator, or take generate(n, "
                                                "generator) and use the generator given")
        return self._reproducibility

    def job_details(self) -> dict:
        adapted = {"object": type(self.object).__name__, "kind": self.kind, "fit": self.fit_note,
                   "likelihood": self.likelihood.value if self.likelihood else None,
                   "likelihood_declared_by": self.likelihood_by, "sampler": None}
        source = self.source
        try:
            adapted["sampler"] = self.sampler() if self.samples else None
            if adapted["sampler"] is not None:
                adapted["reproducible"], adapted["reproducibility"] = self.reproducibility()
                if not adapted["reproducible"]:
                    source += "; samples not reproducible"
        except Exception as exc:  # the numbers stand; the details say what could not be checked
            adapted["reproducibility"] = f"not checked: {type(exc).__name__}: {exc}"
        # The job's own source stands for a model restored from saved weights (artifact, checkpoint).
        return {"source": source, "adapted": {"source": self.source, **adapted}}


def _values(raw, n: int) -> torch.Tensor:
    values = torch.as_tensor(raw)
    if not (values.is_floating_point() and not values.is_complex()):
        raise AdaptError(f"log_prob gave {values.dtype} values; it must give real floating-point log-likelihoods")
    if tuple(values.shape) != (n,):
        hint = (" (a distribution over vectors whose log_prob gives one value per coordinate: wrap it in "
                "torch.distributions.Independent(d, 1))") if values.dim() == 2 and values.shape[0] == n else ""
        raise AdaptError(f"log_prob of {n} examples gave shape {tuple(values.shape)}, expected ({n},){hint}")
    return values


def as_batch(raw, n: int, spec, what: str) -> torch.Tensor:
    """``raw`` as float32 (n, *event_shape): a tensor or numpy array of that shape or of flat rows (n, D);
    :class:`AdaptError` naming what the object gave otherwise."""
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "biuf":
            raise AdaptError(f"{what} gave a numpy array of {raw.dtype}; samples must be numbers")
        raw = torch.from_numpy(np.ascontiguousarray(raw))
    if not isinstance(raw, torch.Tensor):
        raise AdaptError(f"{what} gave a {type(raw).__name__}; samples must be a tensor or numpy array")
    if raw.is_complex():
        raise AdaptError(f"{what} gave {raw.dtype} samples; samples must be real numbers (float, int or bool)")
    shape = (n, *spec.event_shape)
    if tuple(raw.shape) != shape:
        if raw.dim() == 2 and tuple(raw.shape) == (n, spec.dim):
            raw = raw.reshape(shape)
        else:
            flat = f" or ({n}, {spec.dim})" if len(spec.event_shape) > 1 else ""
            raise AdaptError(f"{what} gave shape {tuple(raw.shape)}; {spec.name} needs {shape}{flat}")
    return raw.detach().to(torch.float32)


def off_levels(x: torch.Tensor, spec) -> Optional[str]:
    """Why samples do not fit the dataset's values (non-finite, off its levels), or None."""
    if not torch.isfinite(x).all():
        return f"{int((~torch.isfinite(x)).sum())} value(s) are NaN or infinite"
    if spec.kind is DataKind.CONTINUOUS:
        return None
    levels = int(spec.levels)
    bad = (x != torch.round(x)) | (x < 0) | (x > levels - 1)
    if bad.any():
        what = "0 or 1" if spec.kind is DataKind.BINARY else f"an integer level 0..{levels - 1}"
        return (f"{spec.name} is {spec.kind.value} data, so every value must be {what}; {int(bad.sum())} are not "
                f"(e.g. {float(x[bad][0]):g})")
    return None


def _context_parameter(method) -> Optional[str]:
    """How ``fit`` takes the fit context: "keyword" (a parameter named ctx), "positional" (a third
    positional parameter), or None (it takes train and val only)."""
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.name == "ctx" for p in params):
        return "keyword"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return "positional"
    return None
