"""The plugin manager: loads entry points of the group ``harness`` one at a time and collects
what each plugin registers.

A plugin that fails to import is recorded and skipped (``HARNESS_STRICT_PLUGINS=1`` makes that an
error); ``HARNESS_DISABLE_PLUGINS=a,b`` blocks named plugins. A second registration under a
name already taken is an error naming both plugins.
"""

from __future__ import annotations

import importlib.metadata
import os
import traceback
from dataclasses import dataclass, field
from typing import Optional

import pluggy

from harness import PROJECT, hookspecs
from harness.contracts import DatasetSpec, FeatureExtractorSpec, MetricSpec, ModelSpec, UserError

ENTRY_POINT_GROUP = "harness"


class PluginError(Exception):
    """A plugin broke the contract (duplicate name, wrong type) or failed in strict mode."""


@dataclass
class PluginInfo:
    name: str
    version: str = ""
    module: str = ""
    hooks: list = field(default_factory=list)
    error: Optional[str] = None
    blocked: bool = False


@dataclass
class Registry:
    models: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    feature_extractors: dict = field(default_factory=dict)
    owners: dict = field(default_factory=dict)  # (kind, name) -> plugin name


_KINDS = {
    "models": ModelSpec,
    "datasets": DatasetSpec,
    "metrics": MetricSpec,
    "feature_extractors": FeatureExtractorSpec,
}


class Harness:
    """The host: a pluggy manager plus the validated registries."""

    def __init__(self):
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registry: Optional[Registry] = None

    # ------------------------------------------------------------------ loading
    def load_entry_points(self, strict: Optional[bool] = None, blocked: Optional[set] = None) -> None:
        if strict is None:
            strict = strict_from_env()
        if blocked is None:
            blocked = {b.strip() for b in os.environ.get("HARNESS_DISABLE_PLUGINS", "").split(",") if b.strip()}
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        seen = set()
        for ep in sorted(eps, key=lambda e: e.name):
            if ep.name in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(ep.name)
            dist = getattr(ep, "dist", None)
            info = PluginInfo(name=ep.name, version=getattr(dist, "version", "") or "", module=ep.value)
            self.plugins[ep.name] = info
            if ep.name in blocked:
                info.blocked = True
                continue
            self._load_one(info, ep.load, strict)
        self.load_modules(os.environ.get("HARNESS_PLUGINS", ""), strict=strict)

    def load_modules(self, spec: str, strict: bool = False) -> None:
        """Load plugin modules named by import path (``HARNESS_PLUGINS=pkg.mod,other.mod``), like
        pytest's ``-p``: for plugins that are not installed as a distribution (local experiments,
        tests). Failures are recorded exactly as for entry points."""
        import importlib

        for path in [s.strip() for s in spec.split(",") if s.strip()]:
            info = PluginInfo(name=path, module=path)
            self.plugins[path] = info
            self._load_one(info, lambda path=path: importlib.import_module(path), strict)

    def _load_one(self, info: PluginInfo, load, strict: bool) -> None:
        """Import one plugin and register it; an import failure is recorded (fatal when strict)."""
        try:
            obj = load()
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = f"{type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(f"plugin {info.name!r} ({info.module}) failed to import: {info.error}") from exc
            return
        self.add_plugin(obj, info.name, info)

    def add_plugin(self, obj, name: str, info: Optional[PluginInfo] = None) -> None:
        """Register a plugin object or module under ``name`` (used for tests and entry points)."""
        if info is None:
            info = PluginInfo(name=name, module=getattr(obj, "__name__", type(obj).__name__))
            self.plugins[name] = info
        self.pm.register(obj, name=name)
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
        self._registry = None

    # ------------------------------------------------------------------ registries
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> Registry:
        reg = Registry()
        for kind, cls in _KINDS.items():
            hook = getattr(self.pm.hook, f"harness_register_{kind}")
            for impl in hook.get_hookimpls():
                plugin_name = self.pm.get_name(impl.plugin)

                def register(spec, _kind=kind, _cls=cls, _plugin=plugin_name):
                    self._register(reg, _kind, _cls, spec, _plugin)

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    info = self.plugins.get(plugin_name)
                    msg = f"{type(exc).__name__} in harness_register_{kind}: {exc}"
                    if info is not None:
                        info.error = msg
                    if strict_from_env():
                        raise PluginError(f"plugin {plugin_name!r}: {msg}") from exc
                    traceback.clear_frames(exc.__traceback__)
        return reg

    @staticmethod
    def _register(reg: Registry, kind: str, cls, spec, plugin: str) -> None:
        if not isinstance(spec, cls):
            raise PluginError(f"plugin {plugin!r} registered {type(spec).__name__} in {kind}; expected {cls.__name__}")
        table = getattr(reg, kind)
        if spec.name in table:
            other = reg.owners[(kind, spec.name)]
            raise PluginError(
                f"{kind[:-1].replace('_', ' ')} name {spec.name!r} is registered by both plugin {other!r} "
                f"and plugin {plugin!r}; disable one with HARNESS_DISABLE_PLUGINS"
            )
        table[spec.name] = spec
        reg.owners[(kind, spec.name)] = plugin

    def owner(self, kind: str, name: str) -> str:
        return self.registry.owners.get((kind, name), "")

    # ------------------------------------------------------------------ lookups
    def model(self, name: str) -> ModelSpec:
        return _lookup(self.registry.models, name, "model")

    def dataset(self, name: str) -> DatasetSpec:
        return _lookup(self.registry.datasets, name, "dataset")

    def metric(self, name: str) -> MetricSpec:
        return _lookup(self.registry.metrics, name, "metric")


def strict_from_env() -> bool:
    """``HARNESS_STRICT_PLUGINS`` set to anything but empty, 0 or false makes plugin failures fatal."""
    return os.environ.get("HARNESS_STRICT_PLUGINS", "") not in ("", "0", "false")


def _lookup(table: dict, name: str, what: str):
    if name in table:
        return table[name]
    import difflib

    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    known = ", ".join(sorted(table)) or "none"
    raise UserError(f"unknown {what} {name!r}{hint} (known: {known})")


def get_harness(load_entry_points: bool = True) -> Harness:
    h = Harness()
    if load_entry_points:
        h.load_entry_points()
    return h
