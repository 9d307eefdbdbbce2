"""The plan-time checks of an adapted object: before any job runs, each (model, dataset, hyperparameters)
of a ``py:`` model is built once and tried on a probe batch, so a mistake is a :class:`harness.UserError`
(exit 2, nothing written) that says what is wrong:

- the factory raises, or gives an object with neither ``log_prob`` nor a way to sample;
- ``log_prob`` without a declared likelihood kind (and how to declare one);
- ``log_prob`` of :data:`~harness.adapters.model.PROBE` training examples that raises or is not (n,) real values;
- a sample batch that raises, has the wrong shape or dtype, is not finite or is off the dataset's levels.

NaN log-likelihoods are not refused here: a job whose ``log_prob`` gives NaN fails with the reason, and
the others go on. The checks also draw twice with one seed (:meth:`AdaptedModel.reproducibility`) and
say so when the samples differ; the jobs record it (``reproducible`` in their details, ``samples not
reproducible`` in their source).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from harness.adapters.model import PROBE, AdaptError, off_levels
from harness.contracts import LikelihoodKind
from harness.errors import UserError

HOW_TO_DECLARE = ("declare what kind of log-likelihood it gives with an attribute likelihood = \"exact\" on the "
                  "object or the factory (or \"bound\": a lower bound such as an ELBO; \"estimate\": a stochastic "
                  "estimate), or with --likelihood exact|bound|estimate on the command line")


@dataclass(frozen=True)
class Findings:
    """What one object was found to do."""

    likelihood: Optional[LikelihoodKind]
    samples: bool
    reproducible: Optional[bool] = None
    reproducibility: str = ""


def check_object(plugin, dataset, hparams: dict) -> Findings:
    """Build the plugin's object for ``dataset`` (a materialised :class:`harness.Dataset`) and try it; a
    :class:`UserError` for the first problem found."""
    where = f"{plugin.reference.text} on {dataset.name}"
    spec = dataset.spec
    torch.manual_seed(0)
    try:
        obj = plugin.factory.call(spec, dict(hparams))
    except Exception as exc:
        raise UserError(f"{where}: {plugin.factory.call_text(hparams)} raised {_error(exc)}") from None
    try:
        model = plugin.adapt(obj, spec)
        likelihood = _likelihood(model, dataset, where)
        samples = _samples(model, spec, where)
    except AdaptError as exc:
        raise UserError(f"{where}: {exc}") from None
    if likelihood is None and not samples:
        raise UserError(f"{where}: the factory returned a {type(obj).__name__}, which has neither log_prob nor a "
                        "way to sample (sample(n), sample((n,)), rsample or generate(n, generator)), nor is it a "
                        "callable that returns such an object (as zuko's flows)")
    if not samples:
        return Findings(likelihood, False)
    reproducible, why = model.reproducibility()
    return Findings(likelihood, True, reproducible, why)


def _likelihood(model, dataset, where: str) -> Optional[LikelihoodKind]:
    if not model.has_log_prob():
        return None
    if model.likelihood is None:
        raise UserError(f"{where}: the {type(model.object).__name__} it returned has log_prob but does not say what "
                        f"kind of log-likelihood that is: {HOW_TO_DECLARE}")
    x = dataset.train.x[:PROBE].to(model.device)
    try:
        with torch.no_grad():
            model.score(x)
    except NotImplementedError:
        return None  # a distribution class that declares log_prob without implementing it
    except AdaptError:
        raise
    except Exception as exc:
        raise AdaptError(f"log_prob of {PROBE} training examples raised {_error(exc)}") from None
    return model.likelihood


def _samples(model, spec, where: str) -> bool:
    method = model.sampler()
    if method is None:
        return False
    try:
        x = model.sample(PROBE, torch.Generator().manual_seed(0))
    except NotImplementedError:
        return False  # a distribution without a sampler (torch's default sample needs rsample)
    except AdaptError:
        raise
    except Exception as exc:
        raise AdaptError(f"{method}({PROBE}) raised {_error(exc)}") from None
    problem = off_levels(x, spec)
    if problem:
        raise AdaptError(f"{method}({PROBE}) gave samples that do not fit {spec.name}: {problem}")
    return True


def _error(exc: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{at}"


def combine(name: str, found: dict) -> Findings:
    """One model's findings over its datasets (``{dataset: Findings}``); the objects of one factory must
    agree on what they can do, or the model could not be declared once."""
    kinds = {f.likelihood for f in found.values()}
    samples = {f.samples for f in found.values()}
    if len(kinds) > 1 or len(samples) > 1:
        listing = "; ".join(f"{d}: likelihood {f.likelihood.value if f.likelihood else 'none'}, "
                            f"{'samples' if f.samples else 'no samples'}" for d, f in sorted(found.items()))
        raise UserError(f"{name}: the factory's objects differ between datasets ({listing}); run them separately "
                        "(one --dataset each)")
    not_reproducible = [f for f in found.values() if f.reproducible is False]
    first = next(iter(found.values()))
    if not_reproducible:
        return Findings(first.likelihood, first.samples, False, not_reproducible[0].reproducibility)
    return first
