"""harness: a benchmarking harness for deep generative models.

Plugin authors import :data:`hookimpl` and the contract types from here::

    from harness import hookimpl, ModelSpec, Model
"""

import pluggy

__version__ = "0.2.0"

PROJECT = "harness"
hookimpl = pluggy.HookimplMarker(PROJECT)

from harness.contracts import (  # noqa: E402  (re-exported public API)
    Capability,
    DataKind,
    Dataset,
    DatasetSpec,
    FitContext,
    LikelihoodKind,
    LogLikelihood,
    Measurement,
    MetricContext,
    MetricSkipped,
    MetricSpec,
    Model,
    ModelSpec,
    Output,
    Role,
    Scaling,
    Split,
    Tolerance,
    Tracker,
    TrackerSpec,
    UserError,
)
from harness.hparams import Hyperparameters, Rule  # noqa: E402

__all__ = [
    "__version__",
    "hookimpl",
    "Capability",
    "DataKind",
    "Dataset",
    "DatasetSpec",
    "FitContext",
    "LikelihoodKind",
    "LogLikelihood",
    "Measurement",
    "MetricContext",
    "MetricSkipped",
    "MetricSpec",
    "Model",
    "ModelSpec",
    "Hyperparameters",
    "Output",
    "Role",
    "Rule",
    "Scaling",
    "Split",
    "Tolerance",
    "Tracker",
    "TrackerSpec",
    "UserError",
]
