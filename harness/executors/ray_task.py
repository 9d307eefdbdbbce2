"""The Ray task of one job; it runs in a Ray worker process on a cluster node.

The task does not run the job itself: it hands it to an isolated worker
(:class:`~harness.executors.isolation.IsolatedWorker`), a child process of the Ray worker, and waits.
So the time limit is enforced from outside the job (a hang in native code is killed with the child),
a crash is reported with its signal or exit code, and the Ray worker itself survives either. Each Ray
worker keeps its child for the next job of the same run (building a JobRunner imports torch and every
plugin); a child that died or was killed is replaced, and so is one that sees other GPUs than the
task was given (``CUDA_VISIBLE_DEVICES``, set by Ray per task).

Before its first job of a run a node records itself (:func:`this_node`): its Ray node id, host and
resources, and its machine (:func:`harness.machine.node_machine`: fingerprint and a full calibration,
timed with the threads a job gets). That happens once per node and run: the first task of the run on
the node calibrates while the node's other tasks of the run wait on a lock, then read the record from a
file in the node's Ray session directory.

What comes back is a :class:`TaskAnswer`: the :class:`~harness.executors.isolation.Attempt` (the pickled
JobResult, never unpickled here: this process need not import the plugins; and, when this node does not
share the run directory with the coordinator, the files the job wrote there,
:mod:`harness.executors.transfer`) and the node's record.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.executors import transfer
from harness.executors.isolation import Attempt, IsolatedWorker

# Ray's own entries among a node's resources (bytes of memory), left out of its record.
RAY_OWN = ("memory", "object_store_memory")


@dataclass
class TaskContext:
    """What every job of a run shares (put into Ray's object store once)."""

    setup_blob: bytes  # the pickled WorkerSetup
    sys_path: list  # the coordinator's import paths, added after the node's own
    env: dict  # the coordinator's HARNESS_* variables
    timeout: Optional[float]  # the job time limit
    run_dir: str  # the coordinator's run directory ("" when there is none to share)
    token: str  # see harness.executors.transfer
    device: str  # the run's device, where the node calibrates
    run: str  # names this run among the runs a node serves (a fresh random hex string per run)

    @property
    def digest(self) -> str:
        parts = [self.setup_blob, repr((self.sys_path, sorted(self.env.items()))).encode()]
        return hashlib.sha256(b"\0".join(parts)).hexdigest()


@dataclass
class TaskAnswer:
    attempt: Attempt
    node: dict  # this node's record (see this_node)


_worker: Optional[IsolatedWorker] = None
_worker_key: Optional[tuple] = None
_nodes: dict = {}  # (run, node id, threads, device) -> this node's record, once read or made


def run_job(context: TaskContext, job_blob: bytes, job_dirs: list, request) -> TaskAnswer:
    """Run one job (pickled) in this node's isolated worker; ``job_dirs``: the directories it writes into
    (:func:`harness.executors.transfer.job_dirs`), collected when this node does not share the run
    directory; ``request``: what the job holds (:class:`harness.executors.resources.Request`)."""
    node = this_node(context, request)
    return TaskAnswer(run_attempt(context, job_blob, job_dirs, request.threads), node)


def run_attempt(context: TaskContext, job_blob: bytes, job_dirs: list, threads: int) -> Attempt:
    """One try of the job in this process's isolated worker (``threads`` torch threads), with the files it
    wrote when this node does not share the run directory."""
    attempt = _worker_for(context, threads).run(job_blob, context.timeout)
    if context.run_dir and not transfer.shares(Path(context.run_dir), context.token):
        attempt.files = transfer.collect(Path(context.run_dir), job_dirs)
    return attempt


def this_node(context: TaskContext, request) -> dict:
    """This node's record for the run: ``{"id": Ray node id, "host", "address", "resources" (what the node
    offers Ray), "labels", "machine": {"id", "fingerprint", "calibration"}}``, made by the first task of
    the run on this node and read by the others (see the module doc)."""
    import ray

    runtime = ray.get_runtime_context()
    node_id = runtime.get_node_id()
    key = (context.run, node_id, request.threads, context.device)
    if key in _nodes:
        return _nodes[key]
    folder = Path(runtime.get_temp_dir()) / runtime.get_session_name() / "harness-nodes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{context.run}-{node_id[:16]}-{request.threads}-{context.device.replace(':', '_')}.json"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists():
            record = json.loads(path.read_text())
        else:
            record = _record(ray, node_id, context.device, request)
            part = path.with_suffix(".part")
            part.write_text(json.dumps(record, default=str))
            part.replace(path)
    _nodes[key] = record
    return record


def _record(ray, node_id: str, device: str, request) -> dict:
    from harness.machine import node_machine

    node = next((n for n in ray.nodes() if n.get("NodeID") == node_id), {})
    offered = {k: v for k, v in (node.get("Resources") or {}).items()
               if not k.startswith("node:") and k not in RAY_OWN}
    labels = {k: v for k, v in (node.get("Labels") or {}).items() if not k.startswith("ray.io/")}
    return {"id": node_id, "host": socket.gethostname(), "address": node.get("NodeManagerAddress", ""),
            "resources": offered, "labels": labels,
            "machine": node_machine(device, request.threads, "ray", jobs_at_once(offered, request))}


def jobs_at_once(offered: dict, request) -> int:
    """How many jobs of this request a node offering these resources runs at once (at least 1)."""
    fits = [offered.get("CPU", 0) / request.cpus]
    if request.gpus:
        fits.append(offered.get("GPU", 0) / request.gpus)
    fits += [offered.get(name, 0) / amount for name, amount in request.custom]
    return max(1, int(min(fits) + 1e-9))


def _worker_for(context: TaskContext, threads: int) -> IsolatedWorker:
    global _worker, _worker_key
    key = (context.digest, threads, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if _worker is not None and (_worker.dead or _worker_key != key):
        _worker.close()
        _worker = None
    if _worker is None:
        _worker = IsolatedWorker(context.setup_blob, threads, context.sys_path, env={**os.environ, **context.env})
        _worker_key = key
    return _worker


@atexit.register
def _close() -> None:
    if _worker is not None:
        _worker.close()
