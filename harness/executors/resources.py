"""What one job asks of a cluster: CPUs, and GPUs when the run is on ``--device cuda``.

In order of precedence: ``run --cpus-per-job`` / ``--gpus-per-job`` (every job of the run), the model's
declaration (``ModelSpec.resources``, a number or one per profile), then the defaults: one CPU, and on
CUDA one whole GPU. GPUs may be fractional (0.25: four jobs share a GPU). On ``--device cpu`` a job asks
for no GPU whatever is declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from harness.contracts import UserError

DEFAULT_CPUS = 1
DEFAULT_GPUS_ON_CUDA = 1


@dataclass(frozen=True)
class Request:
    cpus: float
    gpus: float

    @property
    def threads(self) -> int:
        """torch threads for a job holding this many CPUs."""
        return max(1, int(self.cpus))


def check_flags(cpus: Optional[float], gpus: Optional[float]) -> None:
    if cpus is not None and cpus <= 0:
        raise UserError("--cpus-per-job must be more than 0")
    if gpus is not None and gpus < 0:
        raise UserError("--gpus-per-job must be 0 or more")


def declared(spec, profile: str) -> dict:
    """The model's declared ``resources`` for one profile: ``{"cpus": n, "gpus": x}``, only the keys
    declared; a UserError for an unknown key or a value that is not a number >= 0."""
    out = {}
    for key, value in (spec.resources or {}).items():
        if key not in ("cpus", "gpus"):
            raise UserError(f"model {spec.name!r}: unknown resource {key!r} (cpus, gpus)")
        if isinstance(value, Mapping):
            if profile not in value:
                continue
            value = value[profile]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UserError(f"model {spec.name!r}: resource {key!r} must be a number >= 0, not {value!r}")
        out[key] = value
    return out


def request_for(spec, profile: str, device: str, cpus: Optional[float] = None,
                gpus: Optional[float] = None) -> Request:
    """The request of one job of model ``spec`` (see the module doc)."""
    asked = declared(spec, profile)
    cpus = cpus if cpus is not None else asked.get("cpus", DEFAULT_CPUS)
    on_cuda = device.startswith("cuda")
    gpus = (gpus if gpus is not None else asked.get("gpus", DEFAULT_GPUS_ON_CUDA)) if on_cuda else 0
    if on_cuda and gpus <= 0:
        raise UserError(f"model {spec.name}: a job on --device cuda needs a GPU share above 0 "
                        "(--gpus-per-job or the model's resources)")
    if cpus <= 0:
        raise UserError(f"model {spec.name}: a job needs a CPU share above 0")
    return Request(float(cpus), float(gpus))
