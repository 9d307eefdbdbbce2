"""The ``py:`` models of one command: registering a plugin per reference, and checking the planned jobs.

:func:`register` turns the references among a command's ``--model`` values into registered models (a
:class:`~harness.adapters.plugin.AdaptedPlugin` each) and returns an :class:`Adapted` that maps them to
their names. :meth:`Adapted.check` builds and tries the object of every planned (model, dataset,
hyperparameters) once (:mod:`harness.adapters.checks`) and declares what the objects do; a caller plans
again when that changed the declarations, so each job's metrics fit the object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from harness.adapters.checks import check_object, combine
from harness.adapters.plugin import AdaptedPlugin
from harness.adapters.reference import is_reference, parse
from harness.errors import UserError

PLUGIN_PREFIX = "adapted:"


@dataclass
class Adapted:
    """The adapted models of a command: plugin by model name, and the reference each was given as."""

    plugins: dict = field(default_factory=dict)  # name -> AdaptedPlugin
    spelled: dict = field(default_factory=dict)  # the --model value -> name

    def names(self, models: Optional[list]) -> Optional[list]:
        """``models`` with every reference replaced by its model's name."""
        if models is None:
            return None
        return [self.spelled.get(m, m) for m in models]

    def written(self, models: Optional[list]) -> Optional[list]:
        """``models`` as a config file records them: each reference with its label, if it was given one."""
        if models is None:
            return None
        return [self.plugins[self.spelled[m]].reference.spelled if m in self.spelled else m for m in models]

    def check(self, host, jobs: list, datasets) -> tuple:
        """Try the object of every job of an adapted model that is to run (one build per dataset and
        hyperparameters) and declare what it does. (whether any declaration changed, notes for the user)."""
        found: dict = {}
        for job in jobs:
            plugin = self.plugins.get(job.model)
            if plugin is None or job.skip_reason is not None:
                continue
            key = (job.dataset, repr(sorted(job.hparams.items())))
            per_model = found.setdefault(job.model, {})
            if key not in per_model:
                data = datasets.get(host.dataset(job.dataset))
                per_model[key] = check_object(plugin, data, job.hparams)
        changed, notes = False, []
        for name, per_key in found.items():
            findings = combine(name, {f"{d} {h}": f for (d, h), f in per_key.items()})
            changed |= self.plugins[name].declare(findings.likelihood, findings.samples)
            if findings.reproducible is False:
                notes.append(f"{name} ({self.plugins[name].reference.text}): {findings.reproducibility}; its results "
                             "are marked 'samples not reproducible'")
        return changed, notes


def register(host, models: Optional[list], likelihood: Optional[str] = None, fitting: bool = True,
             label: Optional[str] = None) -> Adapted:
    """Register a plugin for every reference among ``models`` (``[LABEL=]py:MODULE:FACTORY``). ``label``
    (``--name``) names the one reference there must then be; ``likelihood`` (``--likelihood``) declares
    the kind of every adapted ``log_prob``. :class:`UserError` for a reference that does not load, a name
    that is taken, or ``--name`` / ``--likelihood`` without a reference."""
    texts = [m for m in models or [] if is_reference(m)]
    if not texts:
        flags = [flag for flag, value in (("--name", label), ("--likelihood", likelihood)) if value]
        if flags:
            raise UserError(f"{' and '.join(flags)} apply to objects of your own code (--model py:MODULE:FACTORY); "
                            "no --model names one")
        return Adapted()
    if label is not None and len(texts) != 1:
        raise UserError(f"--name names one py: model and {len(texts)} are given; name each as LABEL=py:MODULE:FACTORY")
    adapted = Adapted()
    for text in texts:
        reference = parse(text)
        if label is not None:
            reference = parse(f"{label}={reference.text}")
        name = reference.name
        if name in adapted.plugins:
            raise UserError(f"two py: models are named {name!r} ({adapted.plugins[name].reference.text} and "
                            f"{reference.text}); name them as LABEL=py:MODULE:FACTORY")
        if name in host.registry.models:
            raise UserError(f"{reference.text}: {name!r} is the name of a registered model; name this one with "
                            f"--name LABEL or LABEL={reference.text}")
        plugin = AdaptedPlugin(reference, likelihood, fitting)
        plugin.factory  # import and read the signature now: a bad reference is exit 2 before any work
        host.add_plugin(plugin, PLUGIN_PREFIX + name)
        adapted.plugins[name] = plugin
        adapted.spelled[text] = adapted.spelled[plugin.reference.spelled] = name
    return adapted
