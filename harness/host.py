"""The plugin manager: loads entry points of the group ``harness`` one at a time and collects
what each plugin registers.

A plugin that fails to import is recorded and skipped (``HARNESS_STRICT_PLUGINS=1`` makes that an
error); ``HARNESS_DISABLE_PLUGINS=a,b`` blocks named plugins. A second registration under a
name already taken is an error naming both plugins.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.metadata
import os
import traceback
import types
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pluggy

from harness import PROJECT, hookspecs
from harness.contracts import DatasetSpec, FeatureExtractorSpec, MetricSpec, ModelSpec, TrackerSpec, UserError
from harness.executors.spec import ExecutorSpec
from harness.report.formats import ReportFormatSpec

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


@dataclass(frozen=True)
class Registry:
    """What the plugins registered, read-only: name -> spec per kind, and (kind, name) -> plugin."""

    models: Mapping = field(default_factory=dict)
    datasets: Mapping = field(default_factory=dict)
    metrics: Mapping = field(default_factory=dict)
    feature_extractors: Mapping = field(default_factory=dict)
    executors: Mapping = field(default_factory=dict)
    report_formats: Mapping = field(default_factory=dict)
    trackers: Mapping = field(default_factory=dict)
    owners: Mapping = field(default_factory=dict)

    def families(self) -> dict:
        """family -> model names."""
        out: dict = {}
        for spec in self.models.values():
            out.setdefault(spec.family, []).append(spec.name)
        return out

    def output_declarations(self) -> dict:
        """Measurement name -> (metric name, :class:`harness.contracts.Output`) over every metric."""
        return {o.name: (m.name, o) for m in self.metrics.values() for o in m.outputs}


_KINDS = {
    "models": ModelSpec,
    "datasets": DatasetSpec,
    "metrics": MetricSpec,
    "feature_extractors": FeatureExtractorSpec,
    "executors": ExecutorSpec,
    "report_formats": ReportFormatSpec,
    "trackers": TrackerSpec,
}

# The plugin whose hook implementation is running while the registration hooks are called (pluggy calls
# them in its own order, so the host learns who registered what from here).
_CURRENT_PLUGIN: contextvars.ContextVar = contextvars.ContextVar("harness_current_plugin", default=None)


class PluginHost:
    """The host: a pluggy manager plus the validated registries."""

    def __init__(self):
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registry: Optional[Registry] = None
        self._sources: list = []  # how a worker process rebuilds the same plugins (see worker_sources)

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
        """Register a plugin object or module under ``name`` (used for tests and entry points).

        Registering after the registry was read rebuilds it on the next read."""
        if info is None:
            info = PluginInfo(name=name, module=getattr(obj, "__name__", type(obj).__name__))
            self.plugins[name] = info
        self.pm.register(obj, name=name)
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])
        self._sources.append((name, obj))
        self._registry = None

    def worker_sources(self) -> list:
        """How another process rebuilds exactly these plugins: ``(name, module path or picklable
        object)`` in registration order (a module travels by its import path, an object by pickle)."""
        sources = []
        for name, obj in self._sources:
            hooks = self.plugins[name].hooks if name in self.plugins else []
            if not any(h.startswith("harness_register_") for h in hooks):
                continue  # observers (loggers, dashboards) run in the coordinator only
            sources.append((name, obj.__name__ if isinstance(obj, types.ModuleType) else obj))
        return sources

    @classmethod
    def from_sources(cls, sources: list) -> "PluginHost":
        """The host of a worker process: the parent's plugins, from :meth:`worker_sources`."""
        host = cls()
        for name, source in sources:
            obj = importlib.import_module(source) if isinstance(source, str) else source
            host.add_plugin(obj, name)
        return host

    # ------------------------------------------------------------------ registries
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> Registry:
        tables = {kind: {} for kind in _KINDS}
        owners: dict = {}
        for kind, cls in _KINDS.items():
            hook = getattr(self.pm.hook, f"harness_register_{kind}")

            def register(spec, _kind=kind, _cls=cls):
                plugin = _CURRENT_PLUGIN.get() or "<hook wrapper>"
                self._register(tables, owners, _kind, _cls, spec, plugin)

            # Through pluggy's own hook calling, so tryfirst/trylast and hook wrappers apply; each
            # implementation runs inside a guard that knows its plugin and contains its failures.
            with self._guarded(hook, kind):
                hook(register=register)
        return Registry(**{k: types.MappingProxyType(v) for k, v in tables.items()},
                        owners=types.MappingProxyType(owners))

    @contextlib.contextmanager
    def _guarded(self, hook, kind: str):
        originals = []
        for impl in hook.get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue
            originals.append((impl, impl.function))
            impl.function = self._guard(impl.function, impl.plugin_name, kind)
        try:
            yield
        finally:
            for impl, function in originals:
                impl.function = function

    def _guard(self, function, plugin_name: str, kind: str):
        def call(*args, **kwargs):
            token = _CURRENT_PLUGIN.set(plugin_name)
            try:
                return function(*args, **kwargs)
            except PluginError:
                raise
            except Exception as exc:  # a broken registration must not take the other plugins down
                msg = f"{type(exc).__name__} in harness_register_{kind}: {exc}"
                info = self.plugins.get(plugin_name)
                if info is not None:
                    info.error = msg
                if strict_from_env():
                    raise PluginError(f"plugin {plugin_name!r}: {msg}") from exc
                traceback.clear_frames(exc.__traceback__)
                return None
            finally:
                _CURRENT_PLUGIN.reset(token)

        return call

    @staticmethod
    def _register(tables: dict, owners: dict, kind: str, cls, spec, plugin: str) -> None:
        if not isinstance(spec, cls):
            raise PluginError(f"plugin {plugin!r} registered {type(spec).__name__} in {kind}; expected {cls.__name__}")
        table = tables[kind]
        if spec.name in table:
            other = owners[(kind, spec.name)]
            raise PluginError(
                f"{kind[:-1].replace('_', ' ')} name {spec.name!r} is registered by both plugin {other!r} "
                f"and plugin {plugin!r}; disable one with HARNESS_DISABLE_PLUGINS"
            )
        table[spec.name] = spec
        owners[(kind, spec.name)] = plugin

    def owner(self, kind: str, name: str) -> str:
        return self.registry.owners.get((kind, name), "")

    def plugin_version(self, kind: str, name: str) -> str:
        info = self.plugins.get(self.owner(kind, name))
        return info.version if info is not None else ""

    # ------------------------------------------------------------------ lookups
    def model(self, name: str) -> ModelSpec:
        return self._lookup(self.registry.models, name, "model")

    def dataset(self, name: str) -> DatasetSpec:
        return self._lookup(self.registry.datasets, name, "dataset")

    def executor(self, name: str) -> ExecutorSpec:
        return _lookup(self.registry.executors, name, "executor")

    def report_format(self, name: str) -> ReportFormatSpec:
        return _lookup(self.registry.report_formats, name, "report format")

    def tracker(self, name: str) -> TrackerSpec:
        return _lookup(self.registry.trackers, name, "tracker")

    def metric(self, name: str) -> MetricSpec:
        """A metric by its name, or by the name of a measurement it declares (``bpd`` -> ``nll``)."""
        reg = self.registry
        if name not in reg.metrics:
            for spec in reg.metrics.values():
                if name in spec.output_names:
                    return spec
            names = sorted(set(reg.metrics) | {o for m in reg.metrics.values() for o in m.output_names})
            return self._lookup({n: None for n in names}, name, "metric")
        return reg.metrics[name]

    def _lookup(self, table: dict, name: str, what: str):
        """``table[name]``; an unknown name a failed plugin would have provided names that plugin and its error."""
        if name not in table:
            from harness.plugin_failures import raise_if_unavailable

            raise_if_unavailable(self, name, what)
        return _lookup(table, name, what)


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


def get_host(load_entry_points: bool = True) -> PluginHost:
    h = PluginHost()
    if load_entry_points:
        h.load_entry_points()
    return h
