"""The MLflow tracker (``--tracker mlflow``, ``pip install 'harness[mlflow]'``): one parent run per
harness run and a nested child run per job, through MLflow's client.

Where: ``--tracker-arg tracking_uri=...``, else ``MLFLOW_TRACKING_URI``, else MLflow's own default store
(``sqlite:///mlflow.db`` in the working directory). Experiment: ``experiment=...``, else
``MLFLOW_EXPERIMENT_NAME``, else ``harness``.

A child run is named ``<model>/<dataset>/seed<N>`` and tagged ``mlflow.parentRunId``. Its params are
the job's resolved hyperparameters; its metrics each measurement's value and, where there is one, its
standard error (``<key>.stderr``); its tags the ``harness.*`` strings; its artifacts the job's
measurements.json (every value with unit, mark and sample count) and the files it saved beside its
model (samples.npy, density.npz, meta.json). MLflow keys allow letters, digits and ``_ - . / :`` and
space, and a colon is refused on Windows, so ``@`` becomes ``_at_`` and a sampling variant ``[label]``
becomes ``/label``: ``fid@2000`` is ``fid_at_2000``, ``fid@2000[steps=10]`` is ``fid_at_2000/steps_10``
(measurements.json maps every key). The parent gets the job counts (``jobs.ok``, ...) and, at the end,
the report files, results.json and config.toml.

A server that does not answer fails a call after 2 retries and 30 s (MLflow's own defaults wait about
4 minutes) unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT`` say otherwise.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time

from harness import Tracker, TrackerSpec, hookimpl

OPTIONS = {
    "tracking_uri": "where runs go (default: MLFLOW_TRACKING_URI, else MLflow's default store)",
    "experiment": "the experiment's name (default: MLFLOW_EXPERIMENT_NAME, else harness)",
    "run_name": "the parent run's name (default: the results directory's name)",
}
STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
DEFAULT_EXPERIMENT = "harness"
_REFUSED = re.compile(r"[^/\w.\- ]")
_BATCH = 100  # MLflow's log_batch takes at most 100 params and 1000 metrics a call


def mlflow_key(key: str) -> str:
    """A harness key in MLflow's alphabet (``fid@2000[steps=10]`` -> ``fid_at_2000/steps_10``)."""
    base, bracket, label = key.partition("[")
    if bracket:
        label, _, rest = label.partition("]")
        base = f"{base}/{label}{rest}"
    return _REFUSED.sub("_", base.replace("@", "_at_"))


def _quiet_retries(method):
    """Run ``method`` without urllib3's line per retry: when the server is gone, the harness says so once."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        logger = logging.getLogger("urllib3.connectionpool")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            return method(*args, **kwargs)
        finally:
            logger.setLevel(level)

    return call


class MlflowTracker(Tracker):
    def __init__(self, settings):
        self.settings = dict(settings)
        self.client = None
        self.experiment = None
        self.parent = None

    @_quiet_retries
    def start_run(self, run) -> str:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the CLI prints the run's address
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = self.settings.get("tracking_uri") or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=uri)
        name = self.settings.get("experiment") or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found is not None else self.client.create_experiment(name)
        note = (f"harness {run.command} of {run.jobs} job(s), profile {run.profile}, seeds "
                f"{', '.join(map(str, run.seeds))}, on {run.device}; every result is also in "
                f"{run.tags['harness.results']}")
        parent = self.client.create_run(self.experiment, run_name=self.settings.get("run_name") or run.name,
                                        tags={**run.tags, "mlflow.note.content": note})
        self.parent = parent.info.run_id
        if uri.startswith(("http://", "https://")):
            return f"{uri.rstrip('/')}/#/experiments/{self.experiment}/runs/{self.parent}"
        return f"{uri} (experiment {name}, run {self.parent}; `mlflow ui --backend-store-uri {uri}` shows it)"

    @_quiet_retries
    def log_job(self, job) -> None:
        from mlflow.entities import Metric, Param
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        child = self.client.create_run(self.experiment, run_name=job.name,
                                       tags={**job.tags, MLFLOW_PARENT_RUN_ID: self.parent})
        run_id = child.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(v.key), v.value, now, 0) for v in job.values]
        metrics += [Metric(mlflow_key(v.stderr_key), v.stderr, now, 0) for v in job.values if v.stderr is not None]
        params = [Param(str(k), str(v)) for k, v in sorted(job.params.items())]
        for i in range(0, max(len(metrics), len(params)), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + _BATCH], params=params[i:i + _BATCH])
        record = job.record()
        for m in record["measurements"]:
            m["mlflow_key"] = mlflow_key(m["key"])
        self.client.log_dict(run_id, record, "measurements.json")
        for path in job.files.values():
            self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, "FINISHED" if job.ok else "FAILED")

    @_quiet_retries
    def finish_run(self, files, summary, status) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        if summary:
            counts = [Metric(f"jobs.{k}", float(v), now, 0) for k, v in summary.items()]
            self.client.log_batch(self.parent, metrics=counts)
        for path in files.values():
            self.client.log_artifact(self.parent, str(path))
        self.client.set_terminated(self.parent, STATUS.get(status, "FINISHED"))


@hookimpl
def harness_register_trackers(register):
    register(TrackerSpec(name="mlflow", open=MlflowTracker, options=OPTIONS, requires=("mlflow",),
                         install="harness[mlflow]",
                         description="MLflow: a parent run per harness run, a nested child run per job"))
