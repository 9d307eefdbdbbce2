"""The identity of a sampling variant's measurement: ``fid@2000`` measured at ``steps=10`` is
``fid@2000[steps=10]``."""

from __future__ import annotations

def check_variant_label(label) -> str:
    """``label`` if it can name a sampling variant (a non-empty string without square brackets)."""
    if not isinstance(label, str) or not label.strip() or any(c in label for c in "[]"):
        raise ValueError(f"a sampling variant label is a non-empty string without square brackets, not {label!r}")
    return label


def variant_identity(identity: str, label: str) -> str:
    """The identity of a measurement of sampling variant ``label``: ``fid@2000`` -> ``fid@2000[steps=10]``."""
    return f"{identity}[{check_variant_label(label)}]"


def split_variant(identity) -> tuple:
    """(identity without the variant, variant label or None): ``fid@2000[steps=10]`` -> (``fid@2000``,
    ``steps=10``); ``fid@2000`` -> (``fid@2000``, None). A label holds no square brackets, so the variant
    is the bracketed suffix after the last ``[``."""
    identity = str(identity)
    if identity.endswith("]"):
        base, _, label = identity[:-1].rpartition("[")
        if base and label:
            return base, label
    return identity, None
