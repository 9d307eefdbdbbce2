"""The model contract: the Model base class, ModelSpec and its default datasets (names and tags).

Default datasets are names and selections by tag (:func:`tagged`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from harness.contracts import state as _state
from harness.contracts.datasets import DatasetSpec, Split
from harness.contracts.fitting import FitContext, LogLikelihood
from harness.contracts.kinds import Capability, DataKind, LikelihoodKind
from harness.errors import UserError
from harness.hparams import Hyperparameters


class Model:
    """Base class for generative models. Subclasses implement what their spec declares.

    - ``fit(train, val, ctx)``: train on ``train`` (``harness.Split``); ``val`` may be used for early
      stopping or model selection, never ``test``.
    - ``sample(n, generator, labels=None)``: ``n`` samples in data space, shape (n, *event_shape);
      discrete data as integer levels, binary as 0/1.
    - ``log_likelihood(x, labels=None)``: :class:`LogLikelihood` per example in nats.
    - ``device``: where its parameters live; the runner calls ``to(device)`` before fitting.
    - ``export_state()`` / ``restore_state(state)``: the fitted model as named tensors, so it outlives
      its job (saved in a format that loads without executing code). The default covers every
      ``torch.nn.Module`` and tensor attribute; a model with other fitted state (numbers, lists,
      objects holding tensors) overrides both, e.g. storing a scalar as a 0-d tensor.
    - ``sampling_variants()``: other sampler settings of the same fitted model (e.g. fewer sampling
      steps), each measured by the sample metrics in the same job (see the method).
    """

    device = torch.device("cpu")

    def to(self, device) -> "Model":
        self.device = torch.device(device)
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(self.device)
        return self

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not sample")

    def log_likelihood(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> LogLikelihood:
        raise NotImplementedError(f"{type(self).__name__} gives no likelihood")

    def sampling_variants(self) -> dict:
        """Other sampler settings of this fitted model, to be measured in the same job: ``{label: model}``.

        Each value is a view of the fitted model that samples differently (its own number of sampling
        steps, a temperature, ...) and shares the fitted parameters; ``label`` names the setting
        (``"steps=10"``; no square brackets). After the model's own measurements the runner runs every
        metric that measures samples only (needs ``sample`` and not ``log_likelihood``: fidelity, mode
        coverage, sample speed, ...) once per variant; each measurement's identity then ends in
        ``[label]`` (``fid@2000[steps=10]``) and its details carry ``{"variant": label}``. A label
        mapped to the model itself names the setting of the model's own rows (stored in the job's
        details as ``sampling_label``) and is not measured again. Default: no variants."""
        return {}

    def job_details(self) -> dict:
        """What the job's details record about this model beyond its numbers, merged in after the metrics
        (where an adapted object comes from, how it was fitted). A ``source`` key names where a model the
        job built comes from in place of ``trained``; it is ignored for a model restored from saved weights.
        Default: nothing."""
        return {}

    def modules(self) -> list:
        """The torch modules that make up the model (for FLOP counting and memory figures)."""
        return [v for v in vars(self).values() if isinstance(v, torch.nn.Module)]

    def export_state(self) -> dict:
        """Everything a fitted model needs to sample and score again, as ``{name: tensor}`` (CPU).

        Default: the ``state_dict`` of every module attribute (keys ``attr.param``) and every tensor
        attribute (key ``attr``)."""
        return _state.export_attributes(self)

    def restore_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load what :meth:`export_state` gave into a model built by the factory with the same dataset
        and hyperparameters; a missing or unexpected key, or a shape other than the module's (or than the
        tensor attribute's, where the fresh model already has one), is an error."""
        _state.restore_attributes(self, state)
        self.to(self.device)


@dataclass(frozen=True)
class Tagged:
    """An entry of ``ModelSpec.default_datasets``: every installed dataset that carries ``tag``, in the
    order the datasets were registered (see :func:`tagged`)."""

    tag: str

    def select(self, datasets: Mapping[str, DatasetSpec]) -> list:
        """The names of the datasets in ``datasets`` (name -> spec, in registration order) with the tag."""
        return [name for name, spec in datasets.items() if self.tag in spec.tags]

    def __str__(self) -> str:
        return f"tagged({self.tag!r})"


def tagged(tag: str) -> Tagged:
    """Every installed dataset tagged ``tag``, as an entry of ``ModelSpec.default_datasets``:
    ``default_datasets={"quick": [tagged("toy2d"), "digits"]}`` runs the model on every 2-D toy, then
    on digits."""
    return Tagged(str(tag))


@dataclass
class ModelSpec:
    """A registered model factory and its declarations.

    ``factory(dataset_spec, hparams)`` builds an unfitted :class:`Model`; ``hparams`` holds every
    declared hyperparameter, resolved for the job (see :mod:`harness.hparams`).
    ``hyperparameters``: the :class:`harness.hparams.Hyperparameters` declaration (names, base values,
    per-profile and per-dataset rules).
    ``default_datasets``: the datasets ``run --all`` trains it on, per profile (``{profile: [...]}``; a
    plain list applies to every profile): dataset names and selections by tag (:func:`tagged`).
    ``likelihood``: how the model gives a likelihood (None if it does not).
    ``accepts(dataset_spec)``: optional extra check, returning None or the reason it cannot run.
    ``resources``: what one job of this model asks of a cluster executor (``run --executor ray``):
    ``{"cpus": n, "gpus": x}``, each value a number (GPUs may be fractional) or a ``{profile: number}``
    mapping; unset keys take the executor's defaults (see :mod:`harness.executors.resources`).
    ``defaults``: harness 0.1's hyperparameters per profile, ``{profile: {key: value}}``; accepted until
    0.3 with a deprecation warning and mapped onto ``hyperparameters`` (see :mod:`harness.compat`).
    """

    name: str
    family: str
    factory: Callable[[DatasetSpec, dict], Model]
    data_kinds: Sequence[DataKind]
    capabilities: Sequence[Capability] = (Capability.SAMPLE,)
    likelihood: Optional[LikelihoodKind] = None
    hyperparameters: Any = None  # harness.hparams.Hyperparameters
    default_datasets: Any = ()
    accepts: Optional[Callable[[DatasetSpec], Optional[str]]] = None
    description: str = ""
    version: str = "1"
    resources: Any = None
    defaults: Any = None  # the 0.1 form (harness.compat); becomes ``hyperparameters``

    def __post_init__(self):
        self.data_kinds = frozenset(DataKind(k) for k in self.data_kinds)
        self.capabilities = frozenset(Capability(c) for c in self.capabilities)
        if self.likelihood is not None:
            self.likelihood = LikelihoodKind(self.likelihood)
            self.capabilities = self.capabilities | {Capability.LOG_LIKELIHOOD}
        if self.defaults is not None:
            if self.hyperparameters is not None:
                raise TypeError(f"model {self.name!r}: give hyperparameters= (0.2) or defaults= (0.1), not both")
            from harness.compat import hyperparameters_from_profiles

            self.hyperparameters, self.defaults = hyperparameters_from_profiles(self.name, self.defaults), None
        if self.hyperparameters is None:
            self.hyperparameters = Hyperparameters()
        elif isinstance(self.hyperparameters, Mapping):
            self.hyperparameters = Hyperparameters(defaults=self.hyperparameters)
        if not isinstance(self.hyperparameters, Hyperparameters):
            raise TypeError(f"model {self.name!r}: hyperparameters must be a harness.Hyperparameters, not "
                            f"{type(self.hyperparameters).__name__}")

    def resolve_hparams(self, profile: str, dataset: Optional[DatasetSpec] = None, overrides=()) -> dict:
        """Concrete hyperparameters for one job (``overrides``: (key, value, source) from the user)."""
        return self.hyperparameters.resolve(profile, dataset, overrides)

    def default_entries(self, profile: str) -> list:
        """The dataset names and :class:`Tagged` selections declared for ``profile``. A per-profile
        declaration that does not list ``profile`` is an error naming it and the profiles it lists."""
        declared = self.default_datasets
        if isinstance(declared, Mapping):
            if profile not in declared:
                raise UserError(f"model {self.name!r} declares default datasets for the profiles "
                                f"{', '.join(declared) or '(none)'}, not for {profile!r}")
            declared = declared[profile]
        return list(declared)

    def datasets_for(self, profile: str, datasets: Mapping[str, DatasetSpec]) -> list:
        """The names of the default datasets for ``profile``, in declared order, each once: a declared
        name as it stands (installed or not), a :class:`Tagged` selection resolved against ``datasets``
        (name -> spec in registration order, e.g. ``host.registry.datasets``)."""
        names: list = []
        for entry in self.default_entries(profile):
            for name in entry.select(datasets) if isinstance(entry, Tagged) else [entry]:
                if name not in names:
                    names.append(name)
        return names

    def incompatibility(self, dataset: DatasetSpec) -> Optional[str]:
        """None if this model can run on the dataset, otherwise the reason it cannot."""
        if dataset.kind not in self.data_kinds:
            kinds = ", ".join(sorted(k.value for k in self.data_kinds))
            return f"{self.name} handles {kinds} data; {dataset.name} is {dataset.kind.value}"
        if self.accepts is not None:
            return self.accepts(dataset)
        return None
