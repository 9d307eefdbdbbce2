"""Which names a plugin that failed to load would have provided, so a command asked for one of them
says which plugin failed and why, instead of "unknown name".

A failed plugin registered nothing, so its names are read from what is on disk, without running any
of its code again: its entry point's name, and its source, parsed (``ast``) for the names it
registers: ``ModelSpec(name="x", ...)`` and the other ``*Spec`` calls, and the first string argument
of a call passed to ``register`` inside a ``harness_register_<kind>`` hook (``register(_spec("x",
...))``). A module that is a package has every module under it read. A name built at run time
(``name=f"..."``) is not found; the command then says the name is unknown, as before. A plugin
blocked by ``HARNESS_DISABLE_PLUGINS`` is read the same way.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
from pathlib import Path
from typing import Optional

from harness.errors import UserError

SPEC_KINDS = {"ModelSpec": "models", "DatasetSpec": "datasets", "MetricSpec": "metrics",
              "FeatureExtractorSpec": "feature_extractors"}
HOOK_PREFIX = "harness_register_"
MAX_FILES = 200
MAX_BYTES = 2_000_000

_names: dict = {}  # (plugin name, module) -> {kind: set of names}


def unavailable(host, name: str, kind: Optional[str] = None):
    """The failed or blocked plugin that would have provided ``name`` (of ``kind``, any kind if None),
    or None."""
    for info in host.plugins.values():
        if not (info.error or info.blocked):
            continue
        provided = provided_names(info)
        kinds = [kind] if kind else list(provided)
        if name == info.name or any(name in provided.get(k, ()) for k in kinds):
            return info
    return None


def message(info, name: str, what: str = "") -> str:
    """``model 'x': plugin P (package VERSION) failed to load: ERROR; see `harness plugins```."""
    what = f"{what} {name!r}" if what else repr(name)
    if info.blocked:
        return (f"{what}: plugin {info.name} ({package(info)}) is blocked by HARNESS_DISABLE_PLUGINS; "
                "remove it from that list to use it")
    return f"{what}: plugin {info.name} ({package(info)}) failed to load: {info.error}; see `harness plugins`"


def raise_if_unavailable(host, name: str, what: str) -> None:
    """A :class:`UserError` naming the failed plugin when ``name`` (a ``what``: model, dataset, metric)
    would have come from one."""
    info = unavailable(host, name, what + "s")
    if info is not None:
        raise UserError(message(info, name, what))


def summary_lines(host) -> list:
    """One line per failed plugin: what it is, why it failed, the names it would have provided."""
    host.registry  # a plugin whose registration hook raises is known to have failed once the hooks ran
    lines = []
    for info in sorted(host.plugins.values(), key=lambda i: i.name):
        if not info.error:
            continue
        names = sorted(n for kind in provided_names(info).values() for n in kind)
        provides = f" (it provides {', '.join(names)})" if names else ""
        lines.append(f"plugin {info.name} ({package(info)}) failed to load{provides}: {info.error}; "
                     "see `harness plugins`")
    return lines


def package(info) -> str:
    """``DISTRIBUTION VERSION`` of the plugin's entry point, or the module of one loaded by import path."""
    for ep in importlib.metadata.entry_points(group="harness", name=info.name):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            return f"{dist.metadata['Name'] or dist.name} {dist.version}"
    return f"module {info.module.partition(':')[0]}, not an installed package"


def provided_names(info) -> dict:
    """kind -> names the plugin's source registers (see the module doc); empty when it cannot be read."""
    key = (info.name, info.module)
    if key not in _names:
        found: dict = {}
        for path in _source_files(info.module.partition(":")[0]):
            try:
                if path.stat().st_size > MAX_BYTES:
                    continue
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
            except (OSError, SyntaxError, ValueError):
                continue
            for kind, name in _registered(tree):
                found.setdefault(kind, set()).add(name)
        _names[key] = found
    return _names[key]


def _source_files(module: str) -> list:
    """The source files of ``module`` (all under it for a package), found without importing anything."""
    parts = [p for p in module.split(".") if p]
    spec, path = None, None
    for i in range(len(parts)):
        try:
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), path)
        except (ImportError, ValueError):
            return []
        if spec is None:
            return []
        path = list(spec.submodule_search_locations or [])
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    if origin is None or origin.suffix != ".py":
        return []
    if spec.submodule_search_locations:
        return sorted(Path(origin.parent).rglob("*.py"))[:MAX_FILES]
    return [origin]


def _registered(tree: ast.AST):
    """(kind, name) of every registration ``tree`` spells out with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in SPEC_KINDS:
            name = _literal_name(node)
            if name:
                yield SPEC_KINDS[_called(node)], name
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(HOOK_PREFIX):
            kind = node.name[len(HOOK_PREFIX):]
            callback = node.args.args[-1].arg if node.args.args else "register"
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and _called(call) == callback and call.args \
                        and isinstance(call.args[0], ast.Call):
                    name = _literal_name(call.args[0])
                    if name:
                        yield kind, name


def _called(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _literal_name(call: ast.Call) -> Optional[str]:
    for kw in call.keywords:
        if kw.arg == "name":
            return kw.value.value if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str) else None
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None
