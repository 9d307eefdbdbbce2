"""Number formatting shared by the report tables, the terminal summary and the regression gate."""

from __future__ import annotations

import math


def number(v, integer: bool = False) -> str:
    """A compact, fixed-width-ish rendering: 4 significant figures, scientific outside [1e-3, 1e5);
    ``-`` for a missing or non-finite value; no decimals for an integer measurement."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-" if v is None or math.isnan(v) else f"{v:g}"
    if integer and float(v) == round(float(v)):
        return f"{int(round(v))}"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}" if a >= 100 else f"{v:.4f}" if a < 1 else f"{v:.3f}"


def value_with_error(value: float, stderr, integer: bool = False) -> str:
    """``value ± stderr`` (the error left out when unknown or zero)."""
    text = number(value, integer)
    if stderr is not None and isinstance(stderr, (int, float)) and math.isfinite(stderr) and stderr > 0:
        text += f" ± {number(stderr)}"
    return text
