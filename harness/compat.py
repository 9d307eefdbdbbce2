"""Earlier forms of the plugin contract, still accepted for one minor version with a warning.

The policy (docs/plugins.md, "Versions and compatibility"): when a contract type changes in minor
version 0.N, the form of 0.(N-1) keeps working through every 0.N release, mapped onto the new form,
with a :class:`PluginDeprecationWarning` (a ``DeprecationWarning``) that says what to write instead;
0.(N+1) removes it. These warnings are shown once each (Python hides ``DeprecationWarning`` outside
``__main__`` by default), unless the user set what warnings do (``python -W``).

Accepted now (harness 0.2, removed in 0.3):

- ``ModelSpec(defaults={"smoke": {...}, "quick": {...}, ...})``, 0.1's hyperparameters per profile,
  mapped by :func:`hyperparameters_from_profiles`.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Mapping

REMOVED_IN = "0.3"


class PluginDeprecationWarning(DeprecationWarning):
    """A plugin uses a contract form of the previous minor version (it still works until it is removed)."""


if not sys.warnoptions:  # shown once per place, unless the user chose what warnings do (python -W ...)
    warnings.filterwarnings("default", category=PluginDeprecationWarning)


def hyperparameters_from_profiles(model: str, defaults: Mapping[str, Mapping[str, Any]]):
    """0.1's ``defaults={profile: {key: value}}`` as a :class:`harness.Hyperparameters`, with a warning
    that shows the declaration to write instead.

    0.1 gave a job the dictionary of its profile, or quick's for a profile it did not list. Here every
    key is declared once: its base value is quick's (or, for a key quick lacks, the first profile's that
    has it, in the order written), and each other profile's values that differ from it become that
    profile's rule. A key that a profile's dictionary leaves out therefore takes the base value where
    0.1 gave the model nothing (a model written for 0.1 read it with ``hparams.get(key, fallback)``)."""
    from harness.hparams import Hyperparameters

    if not isinstance(defaults, Mapping) or not all(isinstance(v, Mapping) for v in defaults.values()):
        raise TypeError(f"model {model!r}: defaults= (the 0.1 form) is a mapping of profile name to a mapping of "
                        "hyperparameters; declare hyperparameters=harness.Hyperparameters(...) instead")
    base: dict = dict(defaults.get("quick", {}))
    for values in defaults.values():
        for key, value in values.items():
            base.setdefault(key, value)
    for key, value in base.items():  # an integer base with a float in some profile takes floats
        if type(value) is int and any(isinstance(v.get(key), float) for v in defaults.values()):
            base[key] = float(value)
    profiles = {name: {k: v for k, v in values.items() if base.get(k) != v}
                for name, values in defaults.items() if name != "quick"}
    profiles = {name: values for name, values in profiles.items() if values}
    declaration = Hyperparameters(defaults=base, profiles=profiles)
    warnings.warn(f"model {model!r}: ModelSpec(defaults={{profile: {{...}}}}) is the harness 0.1 form, accepted "
                  f"until harness {REMOVED_IN}. Write instead: ModelSpec(..., hyperparameters=harness.Hyperparameters("
                  f"defaults={base!r}, docs={{key: 'what it sets', ...}}"
                  + (f", profiles={profiles!r}" if profiles else "") + ")) and read each key as hparams[key] "
                  "(docs/plugins.md, 'Versions and compatibility')", PluginDeprecationWarning,
                  stacklevel=4)  # the plugin's ModelSpec(...) call: here, __post_init__, the dataclass __init__
    return declaration
