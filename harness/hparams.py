"""Hyperparameters: one declaration per model, resolved into concrete values for each job.

A model declares every hyperparameter once, with its base value, and the changes that profiles and
dataset properties make to it, in one syntax (a list of rules)::

    Hyperparameters(
        defaults={"steps": 1000, "lr": 1e-3, "hidden": 64, "batch_size": 256},
        docs={"steps": "optimisation steps (fewer if the job's deadline comes first)"},
        profiles={"smoke": {"steps": 150}, "full": {"steps": 20000}},
        rules=[
            ({"image": True}, {"batch_size": 64}),
            ({"profile": "quick", "dataset": "digits-binary"}, {"hidden": 20}),
        ],
    )

``profiles={"smoke": {...}}`` is shorthand for the rule ``({"profile": "smoke"}, {...})``; those rules
come first. A rule's selector may name ``profile``, ``dataset`` (dataset names), ``kind``
(continuous, discrete, binary), ``image`` (True or False) and ``tag`` (a dataset tag); each takes one
value or a list of values (any of them matches), and a rule applies when every key it names matches.

Resolution for (profile, dataset): the defaults, then each matching rule in order (a later rule wins),
then the user's overrides (``run --set`` and ``--config``): first those for the model's family, then
those for the model itself. The resolved values are what a job stores, hashes into its key and writes
to the run's config.toml; models read them as ``hparams["key"]``, never with a fallback.

Types follow the default: an int default takes ints, a float default takes ints or floats, a bool
takes booleans, a string takes strings (from ``choices`` when declared), a list takes lists, and a
``None`` default (meaning "automatic") takes any scalar or list. An undeclared key or a value of the
wrong type is an error that names the valid keys: a :class:`~harness.contracts.UserError` when it
comes from the user, a ``ValueError`` at registration when a plugin declares it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from harness.errors import UserError

SELECTOR_KEYS = ("profile", "dataset", "kind", "image", "tag")


class HyperparameterError(ValueError):
    """A value or key that does not fit the declaration (the message says which and why)."""


@dataclass(frozen=True)
class Rule:
    """Values that apply when every key of ``when`` matches the job (see the module doc)."""

    when: Mapping[str, Any]
    values: Mapping[str, Any]

    def matches(self, profile: str, dataset) -> bool:
        for key, wanted in self.when.items():
            options = wanted if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
            if key == "profile":
                actual = [profile]
            elif dataset is None:
                return False
            elif key == "dataset":
                actual = [dataset.name]
            elif key == "kind":
                actual = [dataset.kind.value]
            elif key == "image":
                actual = [bool(dataset.is_image)]
            else:  # tag
                actual = list(dataset.tags)
            if not any(a in options for a in actual):
                return False
        return True

    def describe(self) -> dict:
        return {"when": {k: (list(v) if isinstance(v, (tuple, set, frozenset)) else v) for k, v in self.when.items()},
                "set": dict(self.values)}


@dataclass
class Hyperparameters:
    """A model's hyperparameter declaration (see the module doc)."""

    defaults: Mapping[str, Any] = field(default_factory=dict)
    docs: Mapping[str, str] = field(default_factory=dict)
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rules: Sequence[Any] = ()
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def __post_init__(self):
        self.defaults = {k: _normalise(v) for k, v in dict(self.defaults).items()}
        for key, value in self.defaults.items():
            if isinstance(value, dict):
                raise ValueError(f"hyperparameter {key!r}: a default cannot be a table; declare each key")
        for what in ("docs", "choices"):
            unknown = set(getattr(self, what)) - set(self.defaults)
            if unknown:
                raise ValueError(f"{what} name undeclared hyperparameter(s) {', '.join(sorted(unknown))}")
        rules = [Rule({"profile": p}, dict(v)) for p, v in dict(self.profiles).items()]
        for rule in self.rules:
            rules.append(rule if isinstance(rule, Rule) else Rule(dict(rule[0]), dict(rule[1])))
        for rule in rules:
            bad = set(rule.when) - set(SELECTOR_KEYS)
            if bad:
                raise ValueError(f"rule {rule.describe()['when']} selects on {', '.join(sorted(bad))}; "
                                 f"selectors are {', '.join(SELECTOR_KEYS)}")
            for key, value in rule.values.items():
                try:
                    self.check(key, value)
                except HyperparameterError as exc:
                    raise ValueError(f"rule {rule.describe()['when']}: {exc}") from None
        self._rules = tuple(Rule(dict(r.when), {k: self.check(k, v) for k, v in r.values.items()}) for r in rules)

    # ------------------------------------------------------------------ declarations
    def declares(self, key: str) -> bool:
        return key in self.defaults

    def unknown_key_message(self, key: str, owner: str) -> str:
        close = difflib.get_close_matches(key, list(self.defaults), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self.defaults)) or "none"
        return f"{owner} has no hyperparameter {key!r}{hint} (its hyperparameters: {known})"

    def check(self, key: str, value: Any) -> Any:
        """``value`` converted to the declared type of ``key`` (a float default makes ints floats);
        :class:`HyperparameterError` if the key is undeclared or the value does not fit."""
        if key not in self.defaults:
            raise HyperparameterError(self.unknown_key_message(key, "this model"))
        value = _normalise(value)
        default = self.defaults[key]
        expected = _type_name(default)
        ok = _fits(value, default)
        if not ok:
            raise HyperparameterError(f"hyperparameter {key!r} takes {expected}, not {_type_name(value)} "
                                      f"{value!r}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, list) and default and isinstance(default[0], float):
            value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        if key in self.choices and value not in self.choices[key]:
            raise HyperparameterError(f"hyperparameter {key!r} is one of {', '.join(map(repr, self.choices[key]))}, "
                                      f"not {value!r}")
        return value

    # ------------------------------------------------------------------ resolution
    def resolve(self, profile: str, dataset=None, overrides: Iterable = ()) -> dict:
        """Concrete values for one job: defaults, matching rules, then ``overrides`` (an iterable of
        ``(key, value, source)``; a bad one raises :class:`UserError` naming its source)."""
        values = dict(self.defaults)
        for rule in self._rules:
            if rule.matches(profile, dataset):
                values.update(rule.values)
        for key, value, source in overrides:
            try:
                values[key] = self.check(key, value)
            except HyperparameterError as exc:
                raise UserError(f"{source}: {exc}") from None
        return dict(sorted(values.items()))

    def describe(self) -> dict:
        """The declaration as plain data (``list models --format json``)."""
        return {
            "defaults": dict(self.defaults),
            "docs": dict(self.docs),
            "choices": {k: list(v) for k, v in self.choices.items()},
            "rules": [r.describe() for r in self._rules],
        }


def _normalise(value):
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _type_name(value) -> str:
    if value is None:
        return "any value (None means automatic)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _scalar_fits(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return False


def _plain(value) -> bool:
    """A boolean, number, string, or a list of them (nested lists too): what a hyperparameter holds. TOML's
    dates, times and tables are not."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, (bool, int, float, str))


def _fits(value, default) -> bool:
    if default is None:
        return value is None or _plain(value)
    if value is None:
        return False
    if isinstance(default, list):
        if not isinstance(value, list):
            return False
        if not default:
            return True
        return all(_scalar_fits(v, default[0]) for v in value)
    return _scalar_fits(value, default)


# ---------------------------------------------------------------------------- user overrides


def parse_value(text: str):
    """A ``--set`` value as a TOML scalar or array (``3``, ``1e-3``, ``true``, ``"conv"``, ``[64, 64]``);
    text that is not TOML is taken as a plain string (``--set vae.arch=conv``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except Exception:
        return text


@dataclass(frozen=True)
class Override:
    """One user override: ``target`` is a model or family name, ``source`` says where it came from
    (``--set gmm.components=3``, ``config.toml``), for error messages."""

    target: str
    key: str
    value: Any
    source: str
    dataset: Optional[str] = None  # pins the value for this dataset only (written by config.toml)
    priority: int = 1  # 0: a config file, 1: the command line (wins)


def parse_set(text: str, source: Optional[str] = None) -> Override:
    """``MODEL.KEY=VALUE`` or ``FAMILY.KEY=VALUE`` -> :class:`Override`."""
    source = source or f"--set {text}"
    name, sep, value = text.partition("=")
    target, dot, key = name.strip().partition(".")
    if not sep or not dot or not target or not key:
        raise UserError(f"{source}: expected MODEL.KEY=VALUE or FAMILY.KEY=VALUE (e.g. gmm.components=3)")
    return Override(target, key.strip(), parse_value(value.strip()), source)


class OverrideSet:
    """The user's overrides, checked against the registered models once and applied per job."""

    def __init__(self, overrides: Sequence[Override], models: Mapping[str, Any]):
        self.overrides = list(overrides)
        self.models = models
        families = {}
        for spec in models.values():
            families.setdefault(spec.family, []).append(spec)
        self.families = families
        for o in self.overrides:
            self._check(o)

    def _targets(self, o: Override) -> list:
        if o.target in self.models:
            return [self.models[o.target]]
        if o.target in self.families:
            return self.families[o.target]
        names = sorted(set(self.models) | set(self.families))
        close = difflib.get_close_matches(o.target, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UserError(f"{o.source}: no model or family named {o.target!r}{hint}")

    def _check(self, o: Override) -> None:
        specs = self._targets(o)
        declaring = [s for s in specs if s.hyperparameters.declares(o.key)]
        if not declaring:
            if o.target in self.models:
                msg = specs[0].hyperparameters.unknown_key_message(o.key, repr(specs[0].name))
            else:
                keys = sorted({k for s in specs for k in s.hyperparameters.defaults})
                close = difflib.get_close_matches(o.key, keys, n=3, cutoff=0.5)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                msg = (f"no model of family {o.target!r} has a hyperparameter {o.key!r}{hint} "
                       f"(their hyperparameters: {', '.join(keys) or 'none'})")
            raise UserError(f"{o.source}: {msg}")
        for spec in declaring:
            try:
                spec.hyperparameters.check(o.key, o.value)
            except HyperparameterError as exc:
                raise UserError(f"{o.source}: {spec.name}: {exc}") from None

    def for_job(self, spec, dataset_name: Optional[str]) -> list:
        """(key, value, source) for one model and dataset, in the order they apply (a later one wins):
        a config file before the command line; within each, family-level, then model-level, then
        values pinned to this dataset."""
        def tier(o: Override) -> Optional[int]:
            if o.target == spec.name:
                if o.dataset is None:
                    return 1
                return 2 if o.dataset == dataset_name else None
            if o.target == spec.family and o.target not in self.models and o.dataset is None \
                    and spec.hyperparameters.declares(o.key):
                return 0
            return None

        applying = [(o.priority, tier(o), i, o) for i, o in enumerate(self.overrides) if tier(o) is not None]
        return [(o.key, o.value, o.source) for *_, o in sorted(applying, key=lambda t: t[:3])]
