"""Weights files a user brings (``evaluate --model NAME --checkpoint FILE``), loaded without executing code.

Two formats are read:

- ``.safetensors``: tensors and a JSON header, nothing executable; read with safetensors.
- a torch file (``torch.save``): read with ``torch.load(weights_only=True)``, whose unpickler only
  rebuilds tensors and plain containers and refuses every other global *before* calling it, so a
  pickle that would run code (``__reduce__`` to ``os.system`` and the like) is refused, never run.

Anything else, or a file whose content is not ``{name: tensor}`` (nested dicts are flattened with
``.``, the way ``state_dict`` keys are), is a :class:`harness.UserError`. The names must be those of the
model's ``export_state()``; ``describe_expected`` lists them for error messages.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Mapping

import torch

from harness.artifacts import sha256_file
from harness.contracts import UserError

SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointRefused(UserError):
    """A weights file that cannot be loaded safely, or does not hold ``{name: tensor}``."""


def load_weights(path) -> tuple:
    """``({name: tensor}, sha256 of the file)`` for a weights file; :class:`CheckpointRefused` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointRefused(f"checkpoint {path} does not exist (or is not a file)")
    digest = sha256_file(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        from harness.artifacts import ArtifactError, load_state

        try:
            return load_state(path), digest
        except ArtifactError as exc:
            raise CheckpointRefused(str(exc)) from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing; the error says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for disallowed globals, RuntimeError/EOFError for broken files
        raise CheckpointRefused(
            f"refused {path}: it does not load as plain tensors ({_why(exc)}). A checkpoint is a .safetensors "
            "file or a torch file holding only tensors; a pickle that needs code to load is refused without "
            "being run") from None
    return flatten(obj, path), digest


# Where torch.load's weights-only unpickler says what it refused, in the forms torch's versions use.
_REFUSAL_PATTERNS = (r"(unsupported GLOBAL \S+(?: whose module \S+ is blocked)?)", r"(Unsupported global: \S+)",
                     r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)")


def _why(exc: Exception) -> str:
    """The informative part of torch.load's error (the refused global or operation, not its general advice)."""
    text = str(exc)
    for pattern in _REFUSAL_PATTERNS:
        match = re.search(pattern, text, re.S)
        if match:
            text = match.group(1)
            break
    detail = " ".join(text.split())[:300]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def flatten(obj, path, prefix: str = "") -> dict:
    """A (nested) mapping of tensors as ``{"a.b": tensor}``; :class:`CheckpointRefused` on anything else."""
    if isinstance(obj, torch.Tensor) and prefix:
        return {prefix: obj}
    if not isinstance(obj, Mapping):
        where = f" at {prefix!r}" if prefix else ""
        raise CheckpointRefused(f"{path} holds {type(obj).__name__}{where}; a checkpoint holds a mapping of "
                                "names to tensors (e.g. what the model's export_state gives)")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointRefused(f"{path}: key {key!r} is not a string")
        out.update(flatten(value, path, f"{prefix}.{key}" if prefix else key))
    return out
