"""What one job asks of a cluster: CPUs, GPUs when the run is on ``--device cuda``, and the custom
resources and node labels of ``--resources``.

CPUs and GPUs, in order of precedence: ``run --cpus-per-job`` / ``--gpus-per-job`` (every job of the
run), the model's declaration (``ModelSpec.resources``, a number or one per profile), then the defaults:
one CPU, and on CUDA one whole GPU. GPUs may be fractional (0.25: four jobs share a GPU). On
``--device cpu`` a job asks for no GPU whatever is declared.

``--resources KEY=VALUE`` (repeatable) pins a run to a class of nodes, by what those nodes were started
with rather than by their host names:

- ``KEY=AMOUNT`` (a number > 0): every job holds AMOUNT of the custom resource KEY, which only nodes
  started with it offer (``ray start --resources '{"KEY": N}'``; N / AMOUNT jobs at once on such a node);
- ``KEY=WORD`` (anything else): every job runs on a node labelled KEY=WORD (``ray start --labels
  KEY=WORD``), and holds nothing for it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from harness.contracts import UserError

DEFAULT_CPUS = 1
DEFAULT_GPUS_ON_CUDA = 1

# Resources Ray names itself: asked for through --cpus-per-job / --gpus-per-job, or not at all.
RESERVED = {"CPU": "--cpus-per-job", "GPU": "--gpus-per-job", "memory": None, "object_store_memory": None}
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")
_WORD = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?")  # what Ray accepts in a node label
_PREFIX = re.compile(r"[a-z0-9]([a-z0-9.\-]*[a-z0-9])?")


@dataclass(frozen=True)
class Request:
    """``custom``: (name, amount) pairs of custom resources; ``labels``: (key, value) pairs a node must carry."""

    cpus: float
    gpus: float
    custom: tuple = ()
    labels: tuple = ()

    @property
    def threads(self) -> int:
        """torch threads for a job holding this many CPUs."""
        return max(1, int(self.cpus))

    def describe(self) -> str:
        """``1 CPUs, 0 GPUs, fast=1 on nodes labelled gpu_type=h100``."""
        text = ", ".join([f"{self.cpus:g} CPUs", f"{self.gpus:g} GPUs"] + [f"{k}={v:g}" for k, v in self.custom])
        if self.labels:
            text += " on nodes labelled " + ", ".join(f"{k}={v}" for k, v in self.labels)
        return text


def check_flags(cpus: Optional[float], gpus: Optional[float]) -> None:
    if cpus is not None and cpus <= 0:
        raise UserError("--cpus-per-job must be more than 0")
    if gpus is not None and gpus < 0:
        raise UserError("--gpus-per-job must be 0 or more")


def parse_resources(values) -> Optional[dict]:
    """``--resources`` values (``KEY=VALUE`` strings) as {KEY: amount (float) or label value (str)};
    None when none was given. A UserError says what is wrong with a bad one."""
    if not values:
        return None
    out: dict = {}
    for text in values:
        key, sep, value = str(text).partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UserError(f"--resources takes KEY=VALUE, not {text!r} (e.g. --resources gpu_type=h100 "
                            "or --resources fast_node=1)")
        if key in RESERVED or key.startswith("node:"):
            flag = RESERVED.get(key)
            raise UserError(f"--resources {text}: {key!r} is a resource Ray manages itself"
                            + (f"; use {flag}" if flag else ""))
        if not _KEY.fullmatch(key):
            raise UserError(f"--resources {text}: the key may hold letters, digits and _ . - / only")
        if key in out:
            raise UserError(f"--resources names {key!r} twice")
        out[key] = _amount_or_label(text, key, value)
    return out


def _amount_or_label(text: str, key: str, value: str):
    try:
        amount = float(value)
    except ValueError:
        if not _is_word(value):
            raise UserError(f"--resources {text}: a label value is a word of letters, digits and _ . - "
                            "(at most 63, a letter or digit at each end), a custom resource's amount a number > 0"
                            ) from None
        prefix, _, name = key.rpartition("/")
        if not _is_word(name) or (prefix and not _PREFIX.fullmatch(prefix)) or prefix == "ray.io":
            raise UserError(f"--resources {text}: a label key is a word of letters, digits and _ . - with a letter "
                            "or digit at each end, after an optional DNS prefix and / (not ray.io/)")
        return value
    if not math.isfinite(amount) or amount <= 0:
        raise UserError(f"--resources {text}: the amount of a custom resource must be a number > 0")
    return amount


def _is_word(text: str) -> bool:
    return len(text) <= 63 and _WORD.fullmatch(text) is not None


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
                gpus: Optional[float] = None, resources: Optional[Mapping] = None) -> Request:
    """The request of one job of model ``spec`` (see the module doc); ``resources``: what
    :func:`parse_resources` made of ``--resources``."""
    asked = declared(spec, profile)
    cpus = cpus if cpus is not None else asked.get("cpus", DEFAULT_CPUS)
    on_cuda = device.startswith("cuda")
    gpus = (gpus if gpus is not None else asked.get("gpus", DEFAULT_GPUS_ON_CUDA)) if on_cuda else 0
    if on_cuda and gpus <= 0:
        raise UserError(f"model {spec.name}: a job on --device cuda needs a GPU share above 0 "
                        "(--gpus-per-job or the model's resources)")
    if cpus <= 0:
        raise UserError(f"model {spec.name}: a job needs a CPU share above 0")
    resources = resources or {}
    custom = tuple(sorted((k, float(v)) for k, v in resources.items() if not isinstance(v, str)))
    labels = tuple(sorted((k, v) for k, v in resources.items() if isinstance(v, str)))
    return Request(float(cpus), float(gpus), custom, labels)
