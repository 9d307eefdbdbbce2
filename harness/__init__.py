"""harness: a benchmarking harness for deep generative models.

Plugin authors import :data:`hookimpl` and the contract types from here::

    from harness import hookimpl, ModelSpec, Model

The contract types are imported on first use, so importing ``harness`` alone (pytest does, for the
``harness_check`` fixture of :mod:`harness.testing.pytest_plugin`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pluggy

__version__ = "0.2.0"

PROJECT = "harness"
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports each on first use
    from harness.contracts import (Capability, DataKind, Dataset, DatasetSpec, FitContext, Highlight, Judge,
                                   LikelihoodKind, LogLikelihood, Measurement, MetricContext, MetricSkipped,
                                   MetricSpec, Model, ModelSpec, Output, Role, Scaling, Split, Tolerance, Tracker,
                                   TrackerSpec, UserError)
    from harness.hparams import Hyperparameters, Rule

# The public API: the module that defines each name.
_EXPORTS = {
    **dict.fromkeys(("Capability", "DataKind", "Dataset", "DatasetSpec", "FitContext", "Highlight", "Judge",
                     "LikelihoodKind", "LogLikelihood", "Measurement", "MetricContext", "MetricSkipped", "MetricSpec",
                     "Model", "ModelSpec", "Output", "Role", "Scaling", "Split", "Tolerance", "Tracker", "TrackerSpec",
                     "UserError"), "harness.contracts"),
    **dict.fromkeys(("Hyperparameters", "Rule"), "harness.hparams"),
}

__all__ = ["__version__", "hookimpl", "Capability", "DataKind", "Dataset", "DatasetSpec", "FitContext",
           "Highlight", "Judge", "LikelihoodKind", "LogLikelihood", "Measurement", "MetricContext", "MetricSkipped",
           "MetricSpec", "Model", "ModelSpec", "Hyperparameters", "Output", "Role", "Rule", "Scaling", "Split",
           "Tolerance", "Tracker", "TrackerSpec", "UserError"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
