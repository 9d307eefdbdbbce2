"""Running the kit: which registered things a name means, and every check of each.

A name given to ``check`` (or ``python -m harness check NAME``) means, together:
- the model, dataset or metric of that name (a metric also by the name of an output it declares);
- everything the plugin of that name registered (its entry-point name);
- every model of the family of that name.
A plugin of that name that failed to import is a failed check (``plugin:NAME::loads``) with its error,
and so is a name that a failed plugin would have provided (:mod:`harness.plugin_failures`).
An unknown name is a :class:`harness.UserError` naming the close matches.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass, field
from typing import Sequence

import torch

from harness.contracts import DataKind, UserError
from harness.data import resolve_data_root
from harness.hparams import OverrideSet, parse_set
from harness.plugin_failures import message, unavailable
from harness.testing.datasets import CHECKS as DATASET_CHECKS
from harness.testing.datasets import check_dataset
from harness.testing.metrics import CHECKS as METRIC_CHECKS
from harness.testing.metrics import MetricBench, check_metric
from harness.testing.models import CHECKS as MODEL_CHECKS
from harness.testing.models import KIND_ORDER, ModelKindChecks
from harness.testing.results import FAILED, SKIPPED, CheckResult, Report

KINDS = ("models", "datasets", "metrics")


@dataclass
class Selection:
    """What a list of names means: registered specs per kind (in order, no repeats) and plugin failures."""

    models: list = field(default_factory=list)
    datasets: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # CheckResults for plugins that failed to load
    notes: list = field(default_factory=list)  # CheckResults for plugins with nothing to check

    def add(self, kind: str, spec) -> None:
        table = getattr(self, kind)
        if all(s.name != spec.name for s in table):
            table.append(spec)

    @property
    def empty(self) -> bool:
        return not (self.models or self.datasets or self.metrics or self.failures or self.notes)


def known_names(host) -> list:
    reg = host.registry
    names = set(reg.models) | set(reg.datasets) | set(reg.metrics) | set(host.plugins) | set(reg.families())
    names |= {o for m in reg.metrics.values() for o in m.output_names}
    return sorted(names)


def select(host, names: Sequence[str] = (), everything: bool = False) -> Selection:
    """The :class:`Selection` for ``names`` (see the module doc); ``everything``: all that is registered."""
    reg = host.registry
    sel = Selection()
    if everything:
        for kind in KINDS:
            for name in sorted(getattr(reg, kind)):
                sel.add(kind, getattr(reg, kind)[name])
    for name in names:
        found = False
        for kind in KINDS:
            if name in getattr(reg, kind):
                sel.add(kind, getattr(reg, kind)[name])
                found = True
        for metric in reg.metrics.values():
            if name in metric.output_names:
                sel.add("metrics", metric)
                found = True
        for spec in reg.models.values():
            if spec.family == name:
                sel.add("models", spec)
                found = True
        info = host.plugins.get(name)
        if info is not None:
            found = True
            owned = sorted((kind, n) for (kind, n), owner in reg.owners.items() if owner == name)
            for kind, n in owned:
                if kind in KINDS:
                    sel.add(kind, getattr(reg, kind)[n])
            if info.error:
                sel.failures.append(CheckResult(f"plugin:{name}", "loads", FAILED,
                                                f"plugin {name!r} ({info.module}) failed: {info.error}"))
            elif info.blocked:
                sel.notes.append(CheckResult(f"plugin:{name}", "loads", SKIPPED,
                                             "blocked by HARNESS_DISABLE_PLUGINS"))
            elif not any(kind in KINDS for kind, _ in owned):
                what = ", ".join(sorted({kind.replace("_", " ") for kind, _ in owned})) or "nothing"
                sel.notes.append(CheckResult(f"plugin:{name}", "registers", SKIPPED,
                                             f"registers {what}; the kit checks models, datasets and metrics"))
        if not found:
            failed = unavailable(host, name)
            if failed is not None:  # the plugin that provides it did not load: a failed check
                sel.failures.append(CheckResult(f"plugin:{failed.name}", "loads", FAILED,
                                                message(failed, name)))
                continue
            close = difflib.get_close_matches(name, known_names(host), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UserError(f"nothing named {name!r} to check{hint} (a model, dataset, metric, plugin or family; "
                            "`python -m harness list` shows them)")
    return sel


@contextlib.contextmanager
def isolated(device):
    """How the checks of a group run: on one thread (tiny models gain nothing from intra-op threads and
    lose much on a busy machine), with the global random state (which the checks seed and move) put back
    afterwards; both as they were before."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    device = torch.device(device)
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            yield
    finally:
        torch.set_num_threads(before)


def _with_plugins(host, plugins) -> object:
    """``host`` (or the installed plugins) plus ``plugins``: modules or objects, or ``{name: module}``;
    one already registered (by an entry point, under its module name) is not added twice."""
    if host is None:
        from harness.host import get_host

        host = get_host()
    items = plugins.items() if isinstance(plugins, dict) else [(getattr(p, "__name__", repr(p)), p) for p in plugins]
    loaded = {info.module for info in host.plugins.values()} | set(host.plugins)
    for name, obj in items:
        module = getattr(obj, "__name__", None)
        if name in loaded or module in loaded or host.pm.is_registered(obj):
            continue
        host.add_plugin(obj, name)
    return host


class Session:
    """The checks of one selection, as groups that run together: one model on one data kind, one
    dataset, one metric (see :meth:`planned` and :meth:`run_group`)."""

    def __init__(self, names: Sequence[str] = (), *, everything: bool = False, host=None, plugins=(),
                 profile: str = "smoke", overrides: Sequence[str] = (), seed: int = 0, device="cpu", data_root=None,
                 datasets=()):
        names = list(dict.fromkeys([names] if isinstance(names, str) else names))
        self.host = _with_plugins(host, plugins)
        self.selection = select(self.host, names, everything)
        if self.selection.empty:
            raise UserError("nothing to check: name a model, dataset, metric, plugin or family, or ask for everything")
        self.overrides = OverrideSet([parse_set(text, f"override {text}") for text in overrides],
                                     self.host.registry.models)
        self.profile, self.seed, self.device, self.datasets = profile, seed, device, tuple(datasets)
        self.root = resolve_data_root(data_root)
        self._bench = None

    def planned(self) -> list:
        """[(group, [check ids])] in the order they run; a group is ("model", name, kind), ("dataset",
        name, None) or ("metric", name, None)."""
        out = [(("note", r.subject, None), [r.id]) for r in self.selection.failures + self.selection.notes]
        for spec in self.selection.models:
            for kind in [k for k in KIND_ORDER if k in spec.data_kinds]:
                out.append((("model", spec.name, kind.value),
                            [f"model:{spec.name}[{kind.value}]::{c}" for c in MODEL_CHECKS]))
        for spec in self.selection.datasets:
            out.append((("dataset", spec.name, None), [f"dataset:{spec.name}::{c}" for c in DATASET_CHECKS]))
        for spec in self.selection.metrics:
            out.append((("metric", spec.name, None), [f"metric:{spec.name}::{c}" for c in METRIC_CHECKS]))
        return out

    def run_group(self, group) -> list:
        """The results of one group; a plugin's failure outside any single check (its ``accepts`` or
        ``check`` raising) is a failed check of the group, never an error of the kit."""
        try:
            return self._run_group(group)
        except Exception as exc:
            what, name, variant = group
            return [CheckResult(f"{what}:{name}", "runs", FAILED, f"raised {type(exc).__name__}: {exc}",
                                variant=variant)]

    def _run_group(self, group) -> list:
        what, name, variant = group
        with isolated(self.device):
            if what == "note":
                return [r for r in self.selection.failures + self.selection.notes if r.subject == name]
            if what == "model":
                spec = self.host.registry.models[name]
                pinned = {key: value for key, value, _ in self.overrides.for_job(spec, None)}
                return ModelKindChecks(spec, DataKind(variant), self.profile, pinned, self.seed, self.device,
                                       self.datasets, self.root).run()
            if what == "dataset":
                return check_dataset(self.host.registry.datasets[name], self.root)
            return check_metric(self.host.registry.metrics[name], self.bench)

    @property
    def bench(self) -> MetricBench:
        if self._bench is None:
            self._bench = MetricBench(self.host, self.profile, self.overrides.for_job, self.seed, self.device,
                                      self.root)
        return self._bench

    def close(self) -> None:
        if self._bench is not None:
            self._bench.close()
            self._bench = None

    def run(self) -> Report:
        report = Report()
        try:
            for group, _ in self.planned():
                report.extend(self.run_group(group))
        finally:
            self.close()
        return report


def check(names: Sequence[str] = (), **options) -> Report:
    """Run every conformance check on what ``names`` mean (see the module doc) and return the :class:`Report`.

    Options (keywords): ``everything`` (all that is registered); ``host`` (a plugin host; default the
    installed plugins); ``plugins``: plugin modules to add (for a plugin that is not installed);
    ``profile`` ("smoke"): whose hyperparameters fit the models; ``overrides``: ``MODEL.KEY=VALUE`` or
    ``FAMILY.KEY=VALUE`` strings as ``run --set`` takes them (fewer training steps for a slow model);
    ``seed``; ``device``; ``data_root``; ``datasets``: extra ``DatasetSpec``s for model checks, tried
    before the kit's tiny ones (for a model that accepts none of those).
    """
    return Session(names, **options).run()
