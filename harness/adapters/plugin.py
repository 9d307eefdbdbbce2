"""The runtime plugin of one ``py:`` reference: it registers a :class:`harness.ModelSpec` for the adapted
object under the reference's name, so planning, hyperparameters, executors, the store and the reports
treat it as any registered model.

The plugin is picklable and holds the reference and what was learnt about the object, never the object:
a worker process (``--executor process`` or ``ray``) unpickles it, imports the factory again (from the
folder the coordinator found it in) and builds its own object for each job.

What an object can do is only known once one is built (the factory takes a dataset's spec), so the model
is registered as sample-only until :meth:`AdaptedPlugin.declare` records what the plan-time checks found
(:mod:`harness.adapters.checks`): whether it samples, and the likelihood kind of its ``log_prob``. The
kind comes from ``--likelihood``, else an attribute ``likelihood`` of the object or of the factory, else,
for a ``torch.distributions.Distribution`` (or a callable giving one, as zuko's flows), ``exact``: its
``log_prob`` is by torch's contract the distribution's log-density. Anything else with ``log_prob`` and no
declared kind is refused by the checks.
"""

from __future__ import annotations

from typing import Optional

from harness import hookimpl
from harness.adapters.factory import FactoryReference, declared_likelihood
from harness.adapters.model import AdaptedModel
from harness.adapters.reference import Reference
from harness.contracts import Capability, DataKind, LikelihoodKind, ModelSpec

FAMILY = "adapted"
DISTRIBUTION_CONTRACT = "torch.distributions.Distribution (log_prob is the distribution's exact log-density)"


class AdaptedPlugin(FactoryReference):
    """Registers one reference as a model (see the module doc). ``fitting``: whether jobs call the
    object's ``fit`` (``run``) or measure it as built (``evaluate``)."""

    def __init__(self, reference: Reference, likelihood: Optional[str] = None, fitting: bool = True):
        super().__init__(reference)
        self.likelihood_flag = None if likelihood is None else LikelihoodKind(likelihood)
        self.fitting = fitting
        self.likelihood: Optional[LikelihoodKind] = None
        self.samples = True
        self._spec = None

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_spec": None}

    @property
    def name(self) -> str:
        return self.reference.name

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            self._spec = ModelSpec(
                name=self.name, family=FAMILY, factory=self.build, data_kinds=list(DataKind),
                capabilities=self._capabilities(), likelihood=self.likelihood,
                hyperparameters=self.factory.hyperparameters,
                description=f"{self.source}: an object of your own code, adapted by duck typing",
                version=f"{self.reference.text} {self.version}" + ("" if self.fitting else " as built"))
        return self._spec

    def _capabilities(self) -> list:
        return [Capability.SAMPLE] if self.samples else []

    def declare(self, likelihood: Optional[LikelihoodKind], samples: bool) -> bool:
        """Record what the objects were found to do (in the registered spec too); whether that changed it."""
        changed = (likelihood, samples) != (self.likelihood, self.samples)
        self.likelihood, self.samples = likelihood, samples
        spec = self.spec
        spec.likelihood = likelihood
        spec.capabilities = frozenset(self._capabilities() + ([Capability.LOG_LIKELIHOOD] if likelihood else []))
        return changed

    # ------------------------------------------------------------------ building
    def build(self, dataset_spec, hparams: dict) -> AdaptedModel:
        """The ModelSpec's factory: the user's factory called for this dataset, its object adapted."""
        return self.adapt(self.factory.call(dataset_spec, dict(hparams)), dataset_spec)

    def adapt(self, obj, dataset_spec) -> AdaptedModel:
        model = AdaptedModel(obj, dataset_spec, self.source, fitting=self.fitting, samples=self.samples)
        model.likelihood, model.likelihood_by = self.likelihood_for(model)
        return model

    def likelihood_for(self, model: AdaptedModel) -> tuple:
        """(likelihood kind, who declared it) for an adapted object; (None, None) when nobody did."""
        from torch.distributions import Distribution

        if self.likelihood_flag is not None:
            return self.likelihood_flag, "--likelihood"
        kind, by = declared_likelihood(("object", model.object), ("factory", self.factory.function))
        if kind is not None:
            return kind, by
        if isinstance(model.target(), Distribution):
            return LikelihoodKind.EXACT, DISTRIBUTION_CONTRACT
        return None, None

    @hookimpl
    def harness_register_models(self, register):
        register(self.spec)
