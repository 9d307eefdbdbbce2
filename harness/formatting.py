"""Number formatting shared by the report tables, the terminal summary and the regression gate, and how
a protocol setting's value reads."""

from __future__ import annotations

import json
import math


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number(v, integer: bool = False) -> str:
    """A compact, fixed-width-ish rendering: 4 significant figures, scientific outside [1e-3, 1e5);
    ``-`` for a missing or non-finite value. An integer measurement (a count) has no decimals; its
    mean over seeds, when not a whole number, has one."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-" if v is None or math.isnan(v) else f"{v:g}"
    if integer:
        if float(v) == round(float(v)):
            return f"{int(round(v))}"
        if abs(v) < 1e5:
            return f"{v:.1f}"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}" if a >= 100 else f"{v:.4f}" if a < 1 else f"{v:.3f}"


def error(v) -> str:
    """A standard error to 2 significant figures (``0.031``, ``1.9``, ``2.3e-05``, ``1.2e+06``)."""
    if not _finite(v):
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.1e}"
    exponent = int(math.floor(math.log10(a)))
    if exponent >= 1:
        return f"{round(v, 1 - exponent):.0f}"
    return f"{v:.{1 - exponent}f}"


def has_error(stderr) -> bool:
    return _finite(stderr) and stderr > 0


def value_with_error(value: float, stderr, integer: bool = False, sep: str = " ± ") -> str:
    """``value ± stderr`` (the error to 2 significant figures; left out when unknown, zero, or below
    1e-12 of the value: floating-point noise of identical seeds)."""
    text = number(value, integer)
    if has_error(stderr) and not (_finite(value) and stderr <= 1e-12 * abs(value)):
        text += f"{sep}{error(stderr)}"
    return text


def setting(value) -> str:
    """A protocol setting's value as text: a string as it is, anything else as JSON (``64``, ``null``)."""
    return value if isinstance(value, str) else json.dumps(value)
