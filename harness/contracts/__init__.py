"""The contracts of docs/architecture.md as Python types, one module per contract: what plugins hand
to the host and what the host hands back. Everything is re-exported here (``harness.contracts.X``)."""

from harness.contracts.datasets import Dataset, DatasetSpec, Split, Splits
from harness.contracts.evaluation import EVALUATION_SUBSET_SEED, evaluation_indices
from harness.contracts.fitting import FitContext, LogLikelihood
from harness.contracts.kinds import (ESTIMATORS, Capability, DataKind, Highlight, Judge, LikelihoodKind, Role,
                                    Scaling)
from harness.contracts.metric import FeatureExtractorSpec, MetricContext, MetricSpec, ProfileSizes
from harness.contracts.model import Model, ModelSpec, Tagged, tagged
from harness.contracts.neighbours import NeighbourQuery, Neighbours
from harness.contracts.outputs import (QUALITY, REFERENCE_LEVEL, SPEED, SPEED_TOLERANCE, ExampleValues, Measurement,
                                       Output, Tolerance, UndeclaredMeasurement, checked_protocol)
from harness.contracts.tracker import (TrackedJob, TrackedRun, TrackedValue, Tracker, TrackerSpec,
                                       value_key)
from harness.contracts.variants import check_variant_label, split_variant, variant_identity
from harness.errors import MetricSkipped, UserError

__all__ = ["Capability", "DataKind", "Dataset", "DatasetSpec", "ESTIMATORS", "EVALUATION_SUBSET_SEED",
           "ExampleValues", "FeatureExtractorSpec", "FitContext", "Highlight", "Judge", "LikelihoodKind",
           "LogLikelihood", "Measurement", "MetricContext", "MetricSkipped", "MetricSpec", "Model", "ModelSpec",
           "NeighbourQuery", "Neighbours", "Output", "ProfileSizes", "QUALITY", "REFERENCE_LEVEL", "Role", "SPEED",
           "SPEED_TOLERANCE", "Scaling", "Split", "Splits", "Tagged", "Tolerance", "TrackedJob", "TrackedRun",
           "TrackedValue", "Tracker", "TrackerSpec", "UndeclaredMeasurement", "UserError", "check_variant_label",
           "checked_protocol", "evaluation_indices", "split_variant", "tagged", "value_key", "variant_identity"]
