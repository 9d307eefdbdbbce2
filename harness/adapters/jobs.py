"""Planning the jobs of adapted objects that `run` does not plan: one object measured as built
(``evaluate --model py:...``) and the samples a generator function streams (``evaluate-samples
--generator``). Each is checked completely before anything is written, as :mod:`harness.evaluation`'s
jobs are."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.adapters.planning import Adapted
from harness.adapters.reference import parse
from harness.adapters.stream import GeneratorPlugin
from harness.errors import UserError
from harness.hparams import OverrideSet
from harness.jobs import Job, Origin, job_key, model_key
from harness.worker import DatasetCache, metrics_for

GENERATOR_PLUGIN_PREFIX = "external-generator:"


def keyed(host, job: Job, metrics: Optional[list]) -> Job:
    """``job`` with the ids of the metrics that apply to it and its keys."""
    mspec, dspec = host.model(job.model), host.dataset(job.dataset)
    chosen, _ = metrics_for(host, mspec, dspec, metrics, job.origin)
    job.metrics = tuple(f"{m.name}:{m.version}" for m in chosen)
    versions = (mspec.version, host.plugin_version("models", mspec.name))
    job.key, job.model_key = job_key(job, *versions), model_key(job, *versions)
    return job


def as_built_job(host, adapted: Adapted, name: str, dataset: str, profile: str, seed: int, overrides: list,
                 metrics: Optional[list], data_root) -> tuple:
    """(the job that measures the adapted model ``name`` as its factory builds it on ``dataset``, notes of
    the plan-time checks). The object is built and tried first (:meth:`Adapted.check`)."""
    mspec, dspec = host.model(name), host.dataset(dataset)
    datasets = DatasetCache(Path(data_root))
    data = datasets.get(dspec)
    hparams = mspec.resolve_hparams(profile, dspec, OverrideSet(overrides, host.registry.models).for_job(mspec, dataset))
    job = Job(mspec.name, mspec.family, dspec.name, int(seed), profile, hparams, data.provenance, origin=Origin.TRAINED)
    _, notes = adapted.check(host, [job], datasets)
    return keyed(host, job, metrics), notes


def generator_job(host, text: str, dataset: str, label: Optional[str], profile: str, metrics: Optional[list],
                  data_root) -> Job:
    """Register the function ``text`` (``py:MODULE:FUNCTION``) as a stream of samples labelled ``label``
    (default: the function's name) and plan its job; its first batch is checked here."""
    reference = parse(text, "--generator")
    label = label or reference.name
    dspec = host.dataset(dataset)
    if label in host.registry.models:
        raise UserError(f"{label!r} is a registered model; choose another label for the samples with --name")
    data = DatasetCache(Path(data_root)).get(dspec)
    plugin = GeneratorPlugin(reference, label, dspec.kind)
    digest = plugin.digest(dspec)
    host.add_plugin(plugin, GENERATOR_PLUGIN_PREFIX + label)
    job = Job(label, host.model(label).family, dspec.name, 0, profile, {}, data.provenance, origin=Origin.SAMPLES,
              origin_path=plugin.source, weights=digest)
    job = keyed(host, job, metrics)
    if not job.metrics:
        job.skip_reason, job.skip_kind = "no sample-based metric applies to these samples", "other"
    return job
