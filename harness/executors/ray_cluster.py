"""``--executor ray [--ray-address ADDRESS]``: each job a Ray task (``pip install 'harness[ray]'``).

Without an address a local Ray cluster is started (every core) and shut down at the end; with one, the run
joins that cluster (``ray start --head`` on a machine or inside a Slurm allocation, see docs/cluster.md)
and leaves it running. Each task asks for the job's resources (:mod:`harness.executors.resources`: CPUs,
GPUs on ``--device cuda``, whole or fractional, and the custom resources and node labels of
``--resources``) and runs the job in an isolated worker on its node (:mod:`harness.executors.ray_task`),
which enforces the time limit and reports a crash with its signal. The coordinator (this process)
receives each result as its task ends, with the record of the node that ran it (calibrated there once
per run), writes any files the job left on a node that does not share the run directory into it
(:mod:`harness.executors.transfer`), notes in the job's details the machine and node it ran on
(``machine``: the machine id, None when the node is not known, as for a task whose node was lost;
``node``: its Ray node id, host, resources, labels, fingerprint and calibration; ``files_sent``: what
travelled) and hands the result on to be stored. A task whose Ray worker died
(a lost node, Ray's out-of-memory killer) counts as a worker death for ``--retries``. ``--jobs N``
caps the tasks in flight (default: every job is submitted and Ray runs what fits). Closing the
executor (the end of the run, Ctrl-C) cancels every task still outstanding.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import uuid
from collections import deque
from pathlib import Path
from typing import Iterator, Optional

from harness.contracts import UserError
from harness.executors import transfer
from harness.executors.isolation import DIED, NOT_STARTED, Attempt
from harness.executors.outcome import job_result, should_retry
from harness.executors.ray_task import RAY_OWN, TaskAnswer, TaskContext, run_job
from harness.executors.resources import check_flags, request_for
from harness.jobs import JobResult, JobStatus

log = logging.getLogger(__name__)

INSTALL_HINT = "python -m pip install 'harness[ray]'"
ENV_PREFIX = "HARNESS_"  # variables the workers get from the coordinator


class RayExecutor:
    name = "ray"
    in_process = False
    # Ray decides how many tasks run at once, on this machine or others; the machine fingerprint
    # (harness.machine) records the coordinator's machine as running one.
    workers = 1

    def __init__(self, address: Optional[str] = None, jobs: Optional[int] = None, retries: int = 0,
                 cpus_per_job: Optional[float] = None, gpus_per_job: Optional[float] = None,
                 run_dir: Optional[Path] = None, resources: Optional[dict] = None):
        check_flags(cpus_per_job, gpus_per_job)
        self.address = address
        self.jobs = jobs
        self.retries = max(0, int(retries))
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.resources = dict(resources or {})  # --resources: custom resource amounts and node labels
        self.run_dir = Path(run_dir).resolve() if run_dir is not None else None
        self._ray = None
        self._started_here = False
        self._inflight: dict = {}  # object ref -> (job, its attempts so far)

    # ------------------------------------------------------------------ lifetime
    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Join the cluster at ``address``, the one this process already joined, or a new local one."""
        if self._ray is not None:
            return
        try:
            import ray
        except ImportError:
            raise UserError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
        if not ray.is_initialized():
            quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
            try:
                if self.address:
                    ray.init(address=self.address, **quiet)
                else:  # "local": a new cluster even where RAY_ADDRESS or a `ray start` on this machine names one
                    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
            except Exception as exc:
                where = f"connect to the Ray cluster at {self.address}" if self.address else "start a local Ray cluster"
                raise UserError(f"could not {where}: {type(exc).__name__}: {exc}") from None
            self._started_here = True
        self._ray = ray
        labels = {k: v for k, v in self.resources.items() if isinstance(v, str)}
        if labels:
            self._check_labels(labels)

    def _check_labels(self, labels: dict) -> None:
        """Node labels (``--resources KEY=WORD``) need a Ray whose tasks take a label selector, and keys
        and values it accepts."""
        try:
            self._ray.remote(run_job).options(label_selector=labels)
        except (TypeError, ValueError) as exc:
            version = self._ray.__version__
            self.close()
            raise UserError(f"--resources {', '.join(f'{k}={v}' for k, v in labels.items())}: this Ray "
                            f"({version}) refuses the node labels ({str(exc).rstrip('.')}); if it is too old "
                            "for label selectors, upgrade it, or start the nodes with a custom resource and pass "
                            "--resources NAME=AMOUNT") from None

    def close(self) -> None:
        """Cancel every outstanding task; shut down the local cluster this executor started."""
        self._cancel()
        if self._ray is not None and self._started_here:
            self._ray.shutdown()
            self._started_here = False
        self._ray = None

    def resume_flags(self) -> list:
        flags = ["--executor", self.name]
        for flag, value in (("--ray-address", self.address), ("--jobs", self.jobs),
                            ("--retries", self.retries or None), ("--cpus-per-job", self.cpus_per_job),
                            ("--gpus-per-job", self.gpus_per_job)):
            if value is not None:
                flags += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        for key, value in self.resources.items():
            flags += ["--resources", f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"]
        return flags

    # ------------------------------------------------------------------ running
    def results(self, job_runner, jobs) -> Iterator:
        pending = deque((job, []) for job in jobs)  # (job, its attempts so far)
        if not pending:
            return
        joined_here = self._ray is None
        self.connect()
        ray = self._ray
        token = transfer.mark(self.run_dir) if self.run_dir is not None else ""
        context = TaskContext(pickle.dumps(job_runner.setup), list(sys.path),
                              {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)},
                              job_runner.job_timeout, str(self.run_dir or ""), token, str(job_runner.device),
                              uuid.uuid4().hex)
        context_ref = ray.put(context)
        task = ray.remote(run_job)
        placeable: dict = {}  # request -> why no node offers it (None: some node does)
        try:
            while pending or self._inflight:
                while pending and (self.jobs is None or len(self._inflight) < self.jobs):
                    job, attempts = pending.popleft()
                    try:
                        request = request_for(job_runner.host.model(job.model), job_runner.profile.name,
                                              str(job_runner.device), self.cpus_per_job, self.gpus_per_job,
                                              self.resources)
                    except UserError as exc:
                        yield job, ran_on(JobResult(JobStatus.FAILED, str(exc)), {})
                        continue
                    if request not in placeable:
                        placeable[request] = self._unplaceable(request)
                    if placeable[request]:
                        yield job, ran_on(JobResult(JobStatus.FAILED, placeable[request]), {})
                        continue
                    ref = task.options(**_options(request), name=f"harness:{job.label}").remote(
                        context_ref, pickle.dumps(job), transfer.job_dirs(job), request)
                    self._inflight[ref] = (job, attempts)
                if not self._inflight:
                    continue
                ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    job, attempts = self._inflight.pop(ref)
                    answer = self._answer(ref)
                    attempts = attempts + [answer.attempt]
                    if should_retry(attempts, self.retries):
                        pending.appendleft((job, attempts))
                        continue
                    result = self._deliver(job_result(attempts), attempts[-1].files)
                    yield job, ran_on(result, answer.node)
        finally:
            if joined_here:
                self.close()
            else:
                self._cancel()

    def _answer(self, ref) -> TaskAnswer:
        """The task's answer; when it gave none, an Attempt that says why, from an unknown node."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the task's own code raised (not the job: it runs in a child)
            attempt = Attempt(NOT_STARTED, reason=f"the Ray task failed: {_line(exc, -1)}")
        except ray.exceptions.TaskCancelledError:
            attempt = Attempt(NOT_STARTED, reason="the Ray task was cancelled")
        except ray.exceptions.RayError as exc:  # its worker or node died, or its result was lost
            attempt = Attempt(DIED, reason=f"Ray worker died: {type(exc).__name__}: {_line(exc, 0)}")
        return TaskAnswer(attempt, {})

    def _unplaceable(self, request) -> Optional[str]:
        """The reason to fail jobs with this request: no node offers it and the cluster is the local one
        started here, which will not grow. On an existing cluster a warning instead (an autoscaler may
        add a node that fits; the tasks wait for it)."""
        why = unplaceable(request, [node for node in self._ray.nodes() if node.get("Alive")])
        if why is not None and not self._started_here:
            log.warning("%s; these jobs wait until such a node joins the cluster", why)
            return None
        return why

    def _deliver(self, result: JobResult, files: dict) -> JobResult:
        """Write the files a job left on a node without the run directory into it (see transfer); the
        job's details say how many and how large (``files_sent``)."""
        if files and self.run_dir is not None:
            result.details["files_sent"] = {"files": len(files), "bytes": sum(len(b) for b in files.values())}
            try:
                transfer.deliver(self.run_dir, files)
            except (OSError, ValueError) as exc:
                result.status, result.reason = JobStatus.FAILED, f"the job's files could not be written: {exc}"
        return result

    def _cancel(self) -> None:
        inflight, self._inflight = self._inflight, {}
        if self._ray is None:
            return
        for ref in inflight:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone
                pass


def ran_on(result: JobResult, node: dict) -> JobResult:
    """The job's details say where it ran: ``machine`` (its machine id; None when its node is not known)
    and ``node`` (the node's record without the machine id: id, host, address, resources, labels,
    fingerprint, calibration)."""
    machine = node.get("machine") or {}
    result.details["machine"] = machine.get("id")
    if node:
        result.details["node"] = {**{k: v for k, v in node.items() if k != "machine"},
                                  "fingerprint": machine.get("fingerprint"), "calibration": machine.get("calibration")}
    return result


def _options(request) -> dict:
    """Ray's task options for a request (a label selector only when labels are asked for)."""
    options = dict(num_cpus=request.cpus, num_gpus=request.gpus, max_retries=0)
    if request.custom:
        options["resources"] = dict(request.custom)
    if request.labels:
        options["label_selector"] = dict(request.labels)
    return options


def unplaceable(request, nodes: list) -> Optional[str]:
    """Why no node (as ``ray.nodes()`` reports it: ``Resources``, ``Labels``) offers this request, or None
    if one does."""
    wanted = {"CPU": request.cpus, "GPU": request.gpus, **dict(request.custom)}

    def fits(node) -> bool:
        offered, labels = node.get("Resources") or {}, node.get("Labels") or {}
        return (all(offered.get(key, 0) >= amount for key, amount in wanted.items() if amount)
                and all(labels.get(key) == value for key, value in request.labels))

    if any(fits(node) for node in nodes):
        return None
    offers = "; ".join(_offer(node) for node in nodes) or "none"
    return (f"no node of the Ray cluster offers {request.describe()} for one job (its nodes offer: {offers}); "
            "lower --cpus-per-job / --gpus-per-job, change --resources, or add such a node")


def _offer(node) -> str:
    offered, labels = node.get("Resources") or {}, node.get("Labels") or {}
    custom = [f"{k}={v:g}" for k, v in sorted(offered.items())
              if k not in ("CPU", "GPU", *RAY_OWN) and not k.startswith(("node:", "accelerator"))]
    shown = [f"{k}={v}" for k, v in sorted(labels.items()) if not k.startswith("ray.io/")]
    return (", ".join([f"{offered.get('CPU', 0):g} CPUs", f"{offered.get('GPU', 0):g} GPUs"] + custom)
            + (f" labelled {', '.join(shown)}" if shown else ""))


def _line(exc: BaseException, which: int) -> str:
    """One line of a Ray error's message (a task error ends with the exception; others start with what happened)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[which] if lines else type(exc).__name__
