"""A factory in the user's code: how it is called, and the hyperparameters its signature declares.

The factory's first parameter without a default value, if it has one, receives the dataset's
:class:`harness.DatasetSpec`; every parameter with a default that TOML can write (a boolean, number,
string, list of those, or None) is a hyperparameter of the adapted model, with that default:
``--set NAME.KEY=VALUE`` passes it as a keyword argument, and an undeclared key is the same error as for
any model (it lists the factory's keywords). Parameters with other defaults (objects, modules) keep them.
A second parameter without a default, or a keyword-only one, is an error: the harness would not know
what to pass.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from harness.adapters.reference import Reference, import_module, package_version
from harness.errors import UserError
from harness.hparams import Hyperparameters

_SCALARS = (bool, int, float, str)


@dataclass
class Factory:
    """The referenced callable with what its signature says (see the module doc)."""

    reference: Reference
    function: Callable
    takes_spec: bool
    defaults: dict = field(default_factory=dict)

    @property
    def hyperparameters(self) -> Hyperparameters:
        name = self.reference.attribute
        return Hyperparameters(defaults=dict(self.defaults),
                               docs={key: f"keyword argument of {name}" for key in self.defaults})

    def call(self, dataset_spec, hparams: dict) -> Any:
        """What the factory returns for this dataset and these hyperparameters."""
        if self.takes_spec:
            return self.function(dataset_spec, **hparams)
        return self.function(**hparams)

    def call_text(self, hparams: dict) -> str:
        """How the factory is called with ``hparams``, for messages: ``make_flow(spec, hidden=64)``."""
        args = (["spec"] if self.takes_spec else []) + [f"{k}={v!r}" for k, v in hparams.items()]
        return f"{self.reference.attribute}({', '.join(args)})"


def inspect_factory(reference: Reference) -> Factory:
    """Load ``reference`` and read its signature; :class:`UserError` when it is not a factory."""
    from torch.distributions import Distribution

    obj = reference.load()
    if isinstance(obj, (torch.nn.Module, Distribution)) or not callable(obj):
        raise UserError(f"{reference.text} is a {type(obj).__name__} object, not a factory: give a function that "
                        f"builds and returns it (def {reference.attribute.rsplit('.', 1)[-1]}_factory(spec): "
                        "return ...), so that every job builds its own")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{reference.text}: its signature cannot be read ({exc}); wrap it in a Python function") \
            from None
    takes_spec, defaults = False, {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is param.empty:
            if param.kind is param.KEYWORD_ONLY or takes_spec:
                raise UserError(f"{reference.text}: parameter {param.name!r} has no default; a factory takes at "
                                "most one parameter without a default (it receives the dataset's spec), and every "
                                "other one needs a default (it is a hyperparameter, set with --set NAME.KEY=VALUE)")
            takes_spec = True
        elif _settable(param.default):
            defaults[param.name] = list(param.default) if isinstance(param.default, tuple) else param.default
    return Factory(reference, obj, takes_spec, defaults)


def _settable(value) -> bool:
    if value is None or isinstance(value, _SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _SCALARS) for v in value) and len({type(v) for v in value}) <= 1
    return False


def declared_likelihood(*holders) -> tuple:
    """(kind, who declared it) from the first of ``holders`` with a ``likelihood`` attribute that is a
    string (``"exact"``, ``"bound"``, ``"estimate"``); (None, None) when none has one. A value that is
    not one of the kinds is a :class:`UserError`."""
    from harness.contracts import LikelihoodKind

    for what, holder in holders:
        value = getattr(holder, "likelihood", None)
        if value is None or callable(value):
            continue
        try:
            return LikelihoodKind(value), f"{what} attribute likelihood = {LikelihoodKind(value).value!r}"
        except ValueError:
            kinds = ", ".join(k.value for k in LikelihoodKind)
            raise UserError(f"the {what}'s attribute likelihood is {value!r}; it must be one of {kinds}") from None
    return None, None


class FactoryReference:
    """What the plugin of a ``py:`` model and that of a ``--generator`` stream share: the located
    reference, its package's version (the reference is imported now, so a bad one fails at once), and
    the factory, inspected on first use and again in each worker that unpickles the plugin."""

    def __init__(self, reference: Reference):
        self.reference = reference.located()
        self.version = package_version(import_module(reference.module, reference.text, self.reference.path_entry))
        self._factory = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_factory": None}  # a worker imports the factory itself

    @property
    def source(self) -> str:
        """What every result records: the reference and the version of its package."""
        return f"{self.reference.text} ({self.reference.package} {self.version})"

    @property
    def factory(self) -> Factory:
        if self._factory is None:
            self._factory = inspect_factory(self.reference)
        return self._factory
