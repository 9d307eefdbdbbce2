"""What a baseline file must hold, checked before it is read: a malformed baseline (edited by hand, cut
short, of another tool) is a :class:`harness.UserError` naming the field and what it should be, never
a KeyError or TypeError part way through a comparison.

The schema is what :mod:`harness.regression.baseline` writes; keys marked optional may be absent, and
keys the schema does not name are allowed (a later harness may add some).
"""

from __future__ import annotations

import math
from typing import Any

from harness.contracts import UserError


class _Number:
    """An int or float (not a bool); ``positive``: finite and above 0."""

    def __init__(self, positive: bool = False):
        self.positive = positive

    def problem(self, value) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "a number"
        if self.positive and not (math.isfinite(value) and value > 0):
            return "a positive finite number"
        return ""


class _Optional:
    def __init__(self, inner):
        self.inner = inner


class _MapOf:
    """A mapping of string keys to values of one schema."""

    def __init__(self, inner):
        self.inner = inner


NUMBER, POSITIVE = _Number(), _Number(positive=True)
SCALAR = (str, int, float, bool, type(None))
ENTRY = {"model": str, "dataset": str, "id": str, "?metric": str, "?unit": str, "?estimator": str,
         "higher_is_better": bool, "?kind": str, "mean": NUMBER, "?stderr": _Optional(NUMBER), "?n_seeds": int,
         "?seeds": [int], "?family": str}
FINGERPRINT = {"?processor": _Optional(str), "?device_name": _Optional(str), "?device": _Optional(str),
               "?physical_cores": _Optional(int), "?usable_cpus": _Optional(int), "?torch_threads": _Optional(int),
               "?memory_gib": _Optional(NUMBER), "?executor": _Optional(str), "?workers": _Optional(int)}
CALIBRATION = {"?workloads": _MapOf({"seconds": POSITIVE})}
SECTION = {"?description": _Optional(str), "?fingerprint": _Optional(FINGERPRINT),
           "?calibration": _Optional(CALIBRATION), "?created": _Optional(str), "?source": _Optional(str),
           "?seeds": [int], "?entries": [ENTRY]}
DOCUMENT = {"format": str, "profile": str, "entries": [ENTRY], "datasets": _MapOf(_Optional(str)),
            "?created": _Optional(str), "?source": _Optional(str), "?seeds": [int], "?versions": _MapOf(SCALAR),
            "?models": _MapOf({"?family": str, "?hparams": (dict, list), "?hparams_hash": str}),
            "?owners": _MapOf(_MapOf(str)), "?outputs": _MapOf(dict), "?machines": _MapOf(SECTION)}


def check(doc: Any, path) -> None:
    """Raise :class:`UserError` naming the first field of ``doc`` that does not fit the schema."""
    where, wanted = _problem(doc, DOCUMENT, "")
    if wanted:
        raise UserError(f"baseline {path}: {where or 'the document'} must be {wanted}; save a baseline again with "
                        f"`python -m harness baseline save RESULTS --to {path}`")
    from harness.contracts import Output

    for name, declaration in doc.get("outputs", {}).items():
        try:
            Output.from_dict(declaration)
        except Exception as exc:  # a declaration is read by its own class: any failure is a malformed one
            raise UserError(f"baseline {path}: outputs.{name} is not an output declaration ({type(exc).__name__}: "
                            f"{exc})") from None


def _problem(value, schema, where: str) -> tuple:
    """(where, what it should be) of the first mismatch, or ("", "")."""
    if isinstance(schema, _Optional):
        return ("", "") if value is None else _problem(value, schema.inner, where)
    if isinstance(schema, _Number):
        wanted = schema.problem(value)
        return (where, wanted) if wanted else ("", "")
    if isinstance(schema, _MapOf):
        if not isinstance(value, dict):
            return where, "a mapping"
        for key, item in value.items():
            found = _problem(item, schema.inner, f"{where}.{key}" if where else str(key))
            if found[1]:
                return found
        return "", ""
    if isinstance(schema, list):
        if not isinstance(value, list):
            return where, "a list"
        for i, item in enumerate(value):
            found = _problem(item, schema[0], f"{where}[{i}]")
            if found[1]:
                return found
        return "", ""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return where, "a mapping"
        for key, inner in schema.items():
            optional, name = key.startswith("?"), key.lstrip("?")
            if name not in value:
                if optional:
                    continue
                return f"{where}.{name}" if where else name, "present"
            found = _problem(value[name], inner, f"{where}.{name}" if where else name)
            if found[1]:
                return found
        return "", ""
    types = schema if isinstance(schema, tuple) else (schema,)
    if schema is int and isinstance(value, bool) or not isinstance(value, types):
        names = {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping", float: "a number",
                 type(None): "null"}
        return where, " or ".join(names.get(t, t.__name__) for t in types)
    return "", ""
