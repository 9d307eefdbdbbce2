"""The Weights & Biases tracker (``--tracker wandb``, ``pip install 'harness[wandb]'``): a W&B run for
the harness run and one per job, all in one group (W&B has no nesting; a group is its way to keep
runs together).

W&B's own settings apply: ``WANDB_MODE`` (``offline`` writes runs to disk and ``wandb sync`` uploads
them later), ``WANDB_PROJECT``, ``WANDB_ENTITY``, ``WANDB_DIR`` and the login of ``wandb login``; the
``--tracker-arg`` keys below win over them. The project defaults to ``harness``.

Group: the harness run id. The harness run's W&B run has job type ``harness-run`` and the id
``<run id>``; a job's has job type ``harness-job``, the id ``<run id>-<job key prefix>`` and the name
``<model>/<dataset>/seed<N>``. A job's config is its resolved hyperparameters plus ``harness`` (the
``harness.*`` tags); its history and summary hold one step of every measurement under its key
(``fid@2000``, ``nll.exact``) and ``<key>.stderr``; its files are measurements.json and what the job
saved beside its model (samples.npy, density.npz, meta.json). The harness run's W&B run gets the job
counts (``jobs.ok``, ...) and the report files, results.json and config.toml. Console capture and
system metrics are off: they would measure the benchmark while it times itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness import Tracker, TrackerSpec, UserError, hookimpl

OPTIONS = {
    "project": "the W&B project (default: WANDB_PROJECT, else harness)",
    "entity": "the W&B team or user (default: WANDB_ENTITY, else your default entity)",
    "mode": "online, offline or disabled (default: WANDB_MODE, else online)",
    "dir": "where W&B writes its run folders (default: WANDB_DIR, else the working directory)",
    "run_name": "the name of the harness run's W&B run (default: the results directory's name)",
}
MODES = ("online", "offline", "disabled")
DEFAULT_PROJECT = "harness"


class WandbTracker(Tracker):
    def __init__(self, settings):
        self.settings = dict(settings)
        mode = self.settings.get("mode")
        if mode is not None and mode not in MODES:
            raise UserError(f"--tracker-arg mode={mode}: W&B's mode is one of {', '.join(MODES)}")
        self.group = ""
        self.parent = None

    def _init(self, **kw):
        import wandb

        s = self.settings
        return wandb.init(project=s.get("project") or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                          entity=s.get("entity"), dir=s.get("dir"), mode=s.get("mode"), group=self.group,
                          reinit="create_new",
                          settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, symlink=False),
                          **kw)

    def start_run(self, run) -> str:
        self.group = run.run_id
        self.parent = self._init(id=run.run_id, name=self.settings.get("run_name") or run.name,
                                 job_type="harness-run", config={"harness": dict(run.tags)}, tags=[run.profile])
        if self.parent.settings.mode == "offline":
            root = Path(self.parent.settings.sync_dir).parent
            return f"{root} (offline; upload with `wandb sync {root}/offline-run-*-{run.run_id}*`)"
        return self.parent.url or ""

    def log_job(self, job) -> None:
        child = self._init(id=f"{self.group}-{job.key[:12]}", name=job.name, job_type="harness-job",
                           config={**job.params, "harness": dict(job.tags)},
                           tags=[job.model, job.dataset, job.tags.get("harness.profile", "")])
        try:
            values = {v.key: v.value for v in job.values}
            values.update({v.stderr_key: v.stderr for v in job.values if v.stderr is not None})
            child.log(values)
            record = Path(child.dir) / "measurements.json"
            record.write_text(json.dumps(job.record(), indent=1))
            child.save(str(record), base_path=str(record.parent), policy="now")
            for path in job.files.values():
                child.save(str(path), base_path=str(Path(path).parent), policy="now")
        finally:
            child.finish(exit_code=0 if job.ok else 1)

    def finish_run(self, files, summary, status) -> None:
        if summary:
            self.parent.log({f"jobs.{k}": v for k, v in summary.items()})
        for path in files.values():
            self.parent.save(str(path), base_path=str(Path(path).parent), policy="now")
        self.parent.finish(exit_code=0 if status == "finished" else 1)


@hookimpl
def harness_register_trackers(register):
    register(TrackerSpec(name="wandb", open=WandbTracker, options=OPTIONS, requires=("wandb",),
                         install="harness[wandb]",
                         description="Weights & Biases: a run per harness run and per job, in one group"))
