"""The ray executor on a simulated multi-node cluster on this machine (``ray.cluster_utils.Cluster``): a
head that runs no job (0 CPUs) and worker nodes of one CPU each; the ``fast`` node offers the custom
resource ``fast`` and carries the label ``gpu_type=h100``. Every node is its own raylet with its own
worker processes, so Ray schedules, loses and reports nodes as on a real cluster; only the fingerprints
are equal (one physical machine).

Shown here: jobs land on both workers and each records its node and machine; each node calibrates once
per run; files written by a task on a node that does not see the coordinator's run directory reach it;
``--resources`` pins a run to the nodes that offer a custom resource or carry a label; a worker node
lost mid-run fails only the job it was running (and ``--retries`` runs that job again on another node),
and a resumed run completes with nothing lost and nothing done twice. The jobs are the fake ``sleepy``
model, whose fit sleeps and logs the process that fits, so a node is removed while it fits a job. Ray's
start-up takes most of the module's time; CI installs harness[ray] and runs it (it fails there without
Ray).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import artifacts, hookimpl
from harness.comparison import load_results, results_machine
from harness.hparams import parse_set
from harness.jobs import JobStatus
from harness.profiles import get_profile
from harness.report.environment import run_rows
from harness.runner import Runner
from harness.store import Store

pytestmark = pytest.mark.slow


@dataclass
class Sim:
    cluster: object
    fast: object  # the node with the custom resource "fast" and the label gpu_type=h100
    plain: object

    def add_worker(self):
        node = self.cluster.add_node(num_cpus=1)
        self.cluster.wait_for_nodes()
        return node


@pytest.fixture(scope="module")
def sim():
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed; CI must install harness[ray] (see .ci/run)")
        pytest.skip("Ray is not installed: python -m pip install 'harness[ray]'")
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args=dict(num_cpus=0, include_dashboard=False))
    try:
        fast = cluster.add_node(num_cpus=1, resources={"fast": 100}, labels={"gpu_type": "h100"})
        plain = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        yield Sim(cluster, fast, plain)
    finally:
        ray.shutdown()
        cluster.shutdown()


def executor(**kw):
    from harness.executors.ray_cluster import RayExecutor

    return RayExecutor(**kw)


def run(host, out, seeds, sleep, resume=False, **kw):
    runner = Runner(host, get_profile("smoke"), out, seeds=list(range(seeds)), metrics=["nll"], resume=resume,
                    overrides=[parse_set(f"sleepy.sleep={sleep}")], executor=executor(run_dir=out, **kw))
    store, summary = runner.run(runner.plan(["sleepy"], ["tiny"], False))
    jobs = store.jobs()
    store.close()
    return jobs, summary


def stored(out, what):
    """The store's ``jobs()`` or ``runs()``, read and closed."""
    store = Store(out, read_only=True)
    try:
        return getattr(store, what)()
    finally:
        store.close()


def on_node(jobs) -> Counter:
    return Counter((job["details"].get("node") or {}).get("id") for job in jobs)


def show(title, jobs, names):
    """What the run did, for the test log (pytest -s): each job's seed, status, node and reason."""
    print(f"\n{title}")
    for job in sorted(jobs, key=lambda j: j["seed"]):
        node = (job["details"].get("node") or {}).get("id")
        deaths = job["details"].get("worker_deaths")
        print(f"  seed {job['seed']}: {job['status']:6} on {names.get(node, node) or 'a node not known'}"
              + (f" - {job['reason']}" if job["reason"] else "") + (f" (before: {deaths})" if deaths else ""))


def parent(pid: int) -> int:
    """The parent of a process, from /proc (0 when it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class LoseOnFirstFit(threading.Thread):
    """Removes ``node`` as a crash would (its processes killed) half a second into the first fit that starts
    on it: a fit there is the sleepy model's log line of a process (the isolated worker) whose parent (a
    Ray worker) is a child of that node's raylet. ``seed``: the seed of that job."""

    def __init__(self, sim, node, log: Path):
        super().__init__(daemon=True)
        self.sim, self.node, self.log = sim, node, log
        self.raylet = node.all_processes["raylet"][0].process.pid
        self.seed = None
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            lines = self.log.read_text().splitlines() if self.log.exists() else []
            for word, seed, pid in (line.split() for line in lines if line.startswith("start")):
                if parent(parent(int(pid))) == self.raylet:
                    time.sleep(0.5)
                    self.seed = int(seed)
                    self.sim.cluster.remove_node(self.node, allow_graceful=False)
                    self.done.set()
                    return
            time.sleep(0.05)


class AfterFirstJob:
    """Calls ``then()`` once, when the first job's result is stored."""

    def __init__(self, then):
        self.then, self.done = then, False

    @hookimpl
    def harness_job_finished(self, run, job, result):
        if not self.done:
            self.done = True
            self.then()


def test_jobs_spread_over_both_workers_each_calibrated_once_and_their_files_reach_the_run_directory(
        host, tmp_path, sim):
    out = tmp_path / "run"
    names = {sim.fast.node_id: "fast", sim.plain.node_id: "plain"}
    # After the first job, the run directory's token changes: the nodes no longer recognise it as theirs,
    # as a node whose local directory at that path is not the coordinator's would not. From then on each
    # task collects the files its job wrote, and the coordinator writes them into the run directory.
    host.add_plugin(AfterFirstJob(lambda: (out / ".harness-run-token").write_text("another machine's directory")),
                    "unshare")
    jobs, summary = run(host, out, seeds=6, sleep=1.0)
    show("spread over two worker nodes:", jobs, names)
    assert summary["ok"] == 6
    per_node = on_node(jobs)
    assert set(per_node) == {sim.fast.node_id, sim.plain.node_id}  # both workers, never the head
    print(f"  jobs per node: { {names[n]: c for n, c in per_node.items()} }")

    # Each node calibrated once for the run: every job of a node carries the same calibration, timed
    # there with one torch thread (a job's CPU), one job at a time (the node's one CPU).
    for node_id in per_node:
        records = [job["details"]["node"] for job in jobs if job["details"]["node"]["id"] == node_id]
        assert all(r["calibration"] == records[0]["calibration"] for r in records)
        assert set(records[0]["calibration"]["workloads"]) == {"matmul", "conv2d", "small_ops"}
        fp = records[0]["fingerprint"]
        assert fp["executor"] == "ray" and fp["workers"] == 1 and fp["torch_threads"] == 1
        assert records[0]["resources"]["CPU"] == 1
    fast, plain = ([job["details"]["node"] for job in jobs if job["details"]["node"]["id"] == n][0]
                   for n in (sim.fast.node_id, sim.plain.node_id))
    assert fast["calibration"] != plain["calibration"]  # two calibrations, one per node
    assert fast["labels"] == {"gpu_type": "h100"} and fast["resources"]["fast"] == 100
    # One physical machine: both nodes are the same kind of machine, one machine id, its calibration
    # the median of the two nodes'.
    assert len({job["details"]["machine"] for job in jobs}) == 1
    results = load_results(out)
    machine = results_machine(results)
    assert machine.id == jobs[0]["details"]["machine"] and machine.fingerprint["executor"] == "ray"
    for name, w in machine.calibration["workloads"].items():
        assert w["seconds"] == pytest.approx((fast["calibration"]["workloads"][name]["seconds"]
                                              + plain["calibration"]["workloads"][name]["seconds"]) / 2)
    (env,) = run_rows(stored(out, "runs"), results.rows)
    assert env["machines"].startswith(f"`{machine.id}` (") and env["machines"].endswith(": 6 jobs")
    assert env["nodes"].count("Ray node") == 2
    print(f"  report: machines {env['machines']}\n          nodes {env['nodes']}")

    # Files: the jobs after the token changed sent their artifact folders back; every artifact is whole.
    sent = [job for job in jobs if "files_sent" in job["details"]]
    assert len(sent) >= 4 and all(job["details"]["files_sent"]["files"] >= 2 for job in sent)
    saved = {meta["key"]: path for path, meta in artifacts.list_artifacts(artifacts.artifacts_dir(out))}
    assert set(saved) == {job["key"] for job in jobs}
    for path, meta in artifacts.list_artifacts(artifacts.artifacts_dir(out)):
        artifacts.verify(path, meta)
    print(f"  files sent back by {len(sent)} jobs; {len(saved)} artifacts whole in the run directory")


def test_resources_pin_a_run_to_the_nodes_that_offer_them(host, tmp_path, sim, capsys):
    for resources in ({"fast": 1.0}, {"gpu_type": "h100"}):
        jobs, summary = run(host, tmp_path / next(iter(resources)), seeds=4, sleep=0.2, resources=resources)
        assert summary["ok"] == 4 and on_node(jobs) == {sim.fast.node_id: 4}, resources
    # A resource no node offers: on a cluster that may grow, the jobs would wait; a local cluster (the
    # one a run starts without --ray-address) fails them at once with what the nodes offer.
    from harness.executors.ray_cluster import unplaceable
    from harness.executors.resources import Request

    import ray

    why = unplaceable(Request(1, 0, (("slow", 1.0),)), [n for n in ray.nodes() if n["Alive"]])
    assert "offers 1 CPUs, 0 GPUs, slow=1 for one job" in why and "fast=100 labelled gpu_type=h100" in why


def test_a_worker_node_lost_mid_run_fails_only_its_job_and_resume_completes_the_run(host, tmp_path, sim,
                                                                                     monkeypatch):
    doomed = sim.add_worker()
    names = {sim.fast.node_id: "fast", sim.plain.node_id: "plain", doomed.node_id: "doomed"}
    out, log = tmp_path / "run", tmp_path / "fits.log"
    monkeypatch.setenv("HARNESS_TEST_FIT_LOG", str(log))  # travels with each job to its node
    loss = LoseOnFirstFit(sim, doomed, log)
    loss.start()
    try:
        jobs, summary = run(host, out, seeds=9, sleep=2.0)
    finally:
        loss.done.set()
    show(f"a worker node lost mid-run, in the fit of seed {loss.seed} (no retries):", jobs, names)
    # Only the job the lost node was running failed, its node unknown; the others ran on the nodes that
    # stayed, each once.
    (failed,) = [job for job in jobs if job["status"] == JobStatus.FAILED]
    assert failed["seed"] == loss.seed and failed["reason"].startswith("Ray worker died")
    assert failed["details"]["machine"] is None and "node" not in failed["details"]
    ok = [job for job in jobs if job["status"] == JobStatus.OK]
    assert len(ok) == 8 and set(on_node(ok)) <= {sim.fast.node_id, sim.plain.node_id}
    lines = log.read_text().splitlines()
    assert sorted(int(line.split()[1]) for line in lines if line.startswith("start")) == list(range(9))

    resumed, summary = run(host, out, seeds=9, sleep=2.0, resume=True)
    show("resumed:", resumed, names)
    assert summary["reused"] == 8 and summary["ok"] == 1 and summary["failed"] == 0
    restarted = [int(line.split()[1]) for line in log.read_text().splitlines()[len(lines):]
                 if line.startswith("start")]
    assert restarted == [loss.seed]  # only the lost job ran again
    final = stored(out, "jobs")
    assert len(final) == 9 and {job["status"] for job in final} == {JobStatus.OK}
    assert {job["seed"] for job in final} == set(range(9))


def test_with_retries_the_lost_nodes_job_runs_again_on_another_node(host, tmp_path, sim, monkeypatch):
    doomed = sim.add_worker()
    names = {sim.fast.node_id: "fast", sim.plain.node_id: "plain", doomed.node_id: "doomed"}
    log = tmp_path / "fits.log"
    monkeypatch.setenv("HARNESS_TEST_FIT_LOG", str(log))
    loss = LoseOnFirstFit(sim, doomed, log)
    loss.start()
    try:
        jobs, summary = run(host, tmp_path / "run", seeds=9, sleep=2.0, retries=1)
    finally:
        loss.done.set()
    show(f"a worker node lost mid-run, in the fit of seed {loss.seed} (--retries 1):", jobs, names)
    assert summary["ok"] == 9 and summary["failed"] == 0
    (retried,) = [job for job in jobs if job["details"].get("worker_deaths")]
    assert retried["seed"] == loss.seed and retried["details"]["worker_deaths"][0].startswith("Ray worker died")
    assert retried["details"]["node"]["id"] in (sim.fast.node_id, sim.plain.node_id)  # ran again elsewhere
