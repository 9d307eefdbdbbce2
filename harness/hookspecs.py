"""The plugin contract: every hook the harness calls, in one file.

Registration hooks receive a ``register`` callback (the pattern of simonw/llm and tox). Calling it
hands one object to the host, which validates it, records which plugin made it and rejects a
duplicate name with an error naming both plugins. Observer hooks are called for their side
effects (loggers, dashboards); their return values are ignored.

Compatibility rule: hooks only ever gain optional arguments. Each hook says the version it
appeared in.
"""

import pluggy

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def harness_register_models(register):
    """Register generative models.

    :param register: ``register(spec: harness.ModelSpec)``; call it once per model.

    A fitted model may offer sampling variants (:meth:`harness.Model.sampling_variants`), other sampler
    settings that the runner measures with the sample-only metrics in the same job.

    Since 0.1.0.
    """


@hookspec
def harness_register_datasets(register):
    """Register datasets.

    :param register: ``register(spec: harness.DatasetSpec)``; call it once per dataset.

    Since 0.1.0.
    """


@hookspec
def harness_register_metrics(register):
    """Register metrics.

    :param register: ``register(spec: harness.MetricSpec)``; call it once per metric.

    Since 0.1.0.
    """


@hookspec
def harness_register_feature_extractors(register):
    """Register feature extractors used by fidelity metrics.

    :param register: ``register(spec: harness.contracts.FeatureExtractorSpec)``.

    Since 0.1.0.
    """


@hookspec
def harness_register_executors(register):
    """Register executors: where the jobs of a run go (``run --executor NAME``).

    :param register: ``register(spec: harness.executors.ExecutorSpec)``; call it once per executor.

    The spec's factory receives the generic :class:`harness.executors.ExecutorOptions` and returns an
    object that runs jobs and yields their results (the protocol is in :mod:`harness.executors.spec`);
    the spec declares which options it accepts, and the command line refuses the others.

    Since 0.3.0.
    """


@hookspec
def harness_register_report_formats(register):
    """Register report formats: renderings of a results directory (``report DIR --format NAME``).

    :param register: ``register(spec: harness.report.ReportFormatSpec)``; call it once per format.

    The spec's ``render`` receives a :class:`harness.report.SummarisedRun` and returns the text, which
    goes into the file the spec names, or to standard output; a format declared ``every_run`` is
    written at the end of every run.

    Since 0.3.0.
    """


@hookspec
def harness_register_trackers(register):
    """Register experiment trackers (MLflow, Weights & Biases, ...), which users choose with
    ``--tracker NAME``.

    :param register: ``register(spec: harness.TrackerSpec)``; call it once per tracker.

    The coordinator tells a chosen tracker when a run starts, when each job that ran is stored and when
    the run ends (:class:`harness.Tracker`); never from a worker. Observers that want every run
    implement the hooks below instead.

    Since 0.3.0.
    """


@hookspec
def harness_run_started(run):
    """A run is about to execute its jobs.

    :param run: ``harness.runner.RunInfo`` (run id, profile, seeds, device, versions, planned jobs).

    Since 0.1.0.
    """


@hookspec
def harness_job_finished(run, job, result):
    """A job ended (ok, failed or skipped) and its result is already stored.

    :param run: ``harness.runner.RunInfo``.
    :param job: ``harness.jobs.Job`` (model, dataset, seed, profile, resolved hyperparameters, key).
    :param result: ``harness.jobs.JobResult`` (status, reason, measurements, seconds).

    Since 0.1.0.
    """


@hookspec
def harness_run_finished(run, summary):
    """Every job of the run has ended.

    :param run: ``harness.runner.RunInfo``.
    :param summary: ``dict`` with counts per status and the output directory.

    Since 0.1.0.
    """
