"""Executors: isolation under the process executor (a segfault, a hang in native code, a worker that
cannot start), --retries, the run command's executor options, and the pieces the Ray executor shares
(resources, files for the run directory, how a worker's end is described). Ray itself:
tests/test_executors_ray.py."""

import json
import math
import pickle
import signal
import sqlite3

import pytest

from harness.executors import ProcessPool
from harness.executors.isolation import ANSWERED, DIED, NOT_STARTED, TIMED_OUT, Attempt, describe_exit, kill_after
from harness.executors.outcome import job_result, should_retry
from harness.jobs import JobResult, JobStatus
from harness.profiles import get_profile
from harness.runner import Runner
from tests.fake_plugins import crashers
from tests.fake_plugins.extra import Registrations


def run(host, out, models, executor, **kw):
    runner = Runner(host, get_profile("smoke"), out, seeds=kw.pop("seeds", [0]), metrics=["nll"],
                    executor=executor, **kw)
    store, summary = runner.run(runner.plan(models, ["tiny"], False))
    df = store.results()
    store.close()
    return df, summary


def job_rows(out):
    db = sqlite3.connect(out / "results.sqlite")
    try:
        return {model: (status, reason, json.loads(details))
                for model, status, reason, details in db.execute("SELECT model, status, reason, details FROM jobs")}
    finally:
        db.close()


def analytic_nll(host):
    """Mean NLL of N(0, I) on the tiny test split, computed here (the independent reference)."""
    x = host.dataset("tiny").load(None).test.x.double()
    return float((0.5 * (x**2).sum(1) + math.log(2 * math.pi)).mean())


# ---------------------------------------------------------------------------- isolation (process)

def test_segfault_and_native_hang_fail_only_their_jobs(host, tmp_path):
    """A fit that segfaults and one that deadlocks in native code (which SIGALRM cannot interrupt) end
    as failed with their reason; every other job of the run is ok and right."""
    host.add_plugin(crashers, "crashers")
    df, summary = run(host, tmp_path, ["segv", "stdnormal", "deadlock", "gaussian"], ProcessPool(2), job_timeout=4)
    assert summary["ok"] == 2 and summary["failed"] == 2
    jobs = job_rows(tmp_path)
    assert jobs["segv"][:2] == (JobStatus.FAILED, "worker process died: killed by SIGSEGV (11)")
    status, reason, _ = jobs["deadlock"]
    assert status == JobStatus.FAILED and reason.startswith("timed out after 4 s") and "killed with its worker" in reason
    nll = df.query("metric == 'nll'").set_index("model")
    assert set(nll.index) == {"stdnormal", "gaussian"} and (nll["status"] == JobStatus.OK).all()
    assert nll.loc["stdnormal", "value"] == pytest.approx(analytic_nll(host), rel=1e-6)


def test_retries_rerun_a_job_whose_worker_died_and_never_one_that_raised(host, tmp_path, monkeypatch):
    host.add_plugin(crashers, "crashers")
    monkeypatch.setenv("HARNESS_TEST_CRASH_MARKER", str(tmp_path / "crashed-once"))
    monkeypatch.setenv("HARNESS_TEST_FIT_LOG", str(tmp_path / "fits.log"))
    run(host, tmp_path / "run", ["flaky", "segv", "raiser"], ProcessPool(2, retries=1))
    jobs = job_rows(tmp_path / "run")
    status, reason, details = jobs["flaky"]  # died once, then succeeded on a fresh worker
    assert status == JobStatus.OK and details["worker_deaths"] == ["worker process died: killed by SIGSEGV (11)"]
    status, reason, details = jobs["segv"]  # died on the first attempt and on its retry
    assert status == JobStatus.FAILED and reason == "worker process died: killed by SIGSEGV (11) (on each of 2 attempts)"
    assert len(details["worker_deaths"]) == 1
    status, reason, details = jobs["raiser"]  # raised: the job's own failure, tried once
    assert status == JobStatus.FAILED and "deliberate failure after logging" in reason and "worker_deaths" not in details
    assert (tmp_path / "fits.log").read_text().splitlines() == ["raiser fit"]


class _Unrebuildable(Registrations):
    """A plugin object that pickles but cannot be rebuilt in a worker process."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("this plugin cannot be rebuilt")


def test_a_worker_that_cannot_start_fails_the_jobs_with_its_reason(host, tmp_path):
    host.add_plugin(_Unrebuildable(), "unrebuildable")
    df, summary = run(host, tmp_path, ["stdnormal", "gaussian"], ProcessPool(1), seeds=[0, 1])
    assert summary["failed"] == 4 and summary["ok"] == 0
    reasons = {reason for _, reason, _ in job_rows(tmp_path).values()}
    assert reasons == {"worker process could not start: RuntimeError: this plugin cannot be rebuilt"}


# ---------------------------------------------------------------------------- outcomes

def test_a_workers_end_names_the_signal_or_exit_code():
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV (11)"
    assert describe_exit(-signal.SIGKILL).startswith("killed by SIGKILL (9)")
    assert "out-of-memory" in describe_exit(-signal.SIGKILL)
    assert describe_exit(3) == "exited with code 3"


def test_the_kill_deadline_comes_after_the_time_limit():
    assert kill_after(None) is None and kill_after(0) is None
    for limit in (0.5, 4, 120, 7200):
        assert kill_after(limit) > limit


def test_only_a_dead_worker_is_retried():
    died, timed_out, answered = Attempt(DIED, reason="d"), Attempt(TIMED_OUT, reason="t"), Attempt(ANSWERED)
    assert should_retry([died], 1) and not should_retry([died], 0) and not should_retry([died, died], 1)
    assert not should_retry([timed_out], 3) and not should_retry([answered], 3)
    assert not should_retry([Attempt(NOT_STARTED, reason="n")], 3)


def test_job_result_from_attempts():
    ok = JobResult(JobStatus.OK, details={"fit_steps": 3})
    result = job_result([Attempt(DIED, reason="worker process died: killed by SIGKILL (9)"),
                         Attempt(ANSWERED, result=pickle.dumps(ok))])
    assert result.status == JobStatus.OK and result.details == {"fit_steps": 3, "worker_deaths": [
        "worker process died: killed by SIGKILL (9)"]}
    mixed = job_result([Attempt(DIED, reason="a"), Attempt(DIED, reason="b")])
    assert mixed.status == JobStatus.FAILED and mixed.reason == "b (attempt 2; before: a)"
    unreadable = job_result([Attempt(ANSWERED, result=b"not a pickle", seconds=2.0)])
    assert unreadable.status == JobStatus.FAILED and "could not be read" in unreadable.reason and unreadable.seconds == 2.0


# ---------------------------------------------------------------------------- resources

def test_resource_requests_follow_flags_then_declaration_then_defaults():
    from harness import DataKind, ModelSpec, UserError
    from harness.executors.resources import Request, request_for
    from tests.fake_plugins.fakes import StandardNormal

    def spec(resources=None):
        return ModelSpec(name="m", family="fake", factory=StandardNormal, data_kinds=[DataKind.CONTINUOUS],
                         resources=resources)

    assert request_for(spec(), "quick", "cpu") == Request(1, 0)
    assert request_for(spec(), "quick", "cuda") == Request(1, 1)
    declared = spec({"cpus": 2, "gpus": {"smoke": 0.25, "full": 1}})
    assert request_for(declared, "smoke", "cuda") == Request(2, 0.25)
    assert request_for(declared, "full", "cuda") == Request(2, 1)
    assert request_for(declared, "quick", "cuda") == Request(2, 1)  # not declared for quick: the default
    assert request_for(declared, "smoke", "cpu") == Request(2, 0)  # no GPU on --device cpu
    assert request_for(declared, "smoke", "cuda", cpus=4, gpus=0.5) == Request(4, 0.5)
    assert Request(2.5, 0).threads == 2 and Request(0.5, 0).threads == 1
    with pytest.raises(UserError, match="unknown resource 'memory'"):
        request_for(spec({"memory": 3}), "smoke", "cpu")
    with pytest.raises(UserError, match="must be a number >= 0"):
        request_for(spec({"gpus": "one"}), "smoke", "cuda")


# ---------------------------------------------------------------------------- files for the run directory

def test_files_a_job_left_on_an_unshared_node_travel_to_the_run_directory(tmp_path):
    from harness.executors import transfer

    coordinator, node = tmp_path / "coordinator", tmp_path / "node"
    token = transfer.mark(coordinator)
    assert transfer.shares(coordinator, token) and not transfer.shares(node, token)
    (node / "artifacts" / "k1" / "sub").mkdir(parents=True)
    (node / "artifacts" / "k1" / "meta.json").write_text("{}")
    (node / "artifacts" / "k1" / "sub" / "state.bin").write_bytes(b"\x00\x01")
    (node / "artifacts" / "k2").mkdir()
    (node / "artifacts" / "k2" / "other").write_text("another job's")
    files = transfer.collect(node, ["artifacts/k1"])
    assert files == {"artifacts/k1/meta.json": b"{}", "artifacts/k1/sub/state.bin": b"\x00\x01"}
    assert not (node / "artifacts" / "k1").exists() and (node / "artifacts" / "k2" / "other").exists()
    transfer.deliver(coordinator, files)
    assert (coordinator / "artifacts" / "k1" / "sub" / "state.bin").read_bytes() == b"\x00\x01"
    for bad in ("../escape", "/etc/passwd", "artifacts/../../escape"):
        with pytest.raises(ValueError, match="outside the run directory"):
            transfer.deliver(coordinator, {bad: b""})
    assert not (tmp_path / "escape").exists()


# ---------------------------------------------------------------------------- the run command

@pytest.mark.parametrize("flags, message", [
    (["--jobs", "2"], "--jobs only applies to executors that run several jobs at once: process, ray "
                      "(not --executor local)"),
    (["--retries", "1"], "--retries only applies to executors that retry a job whose worker died: process, ray"),
    (["--executor", "process", "--ray-address", "auto"],
     "--ray-address only applies to executors that join a cluster at an address: ray (not --executor process)"),
    (["--executor", "local", "--gpus-per-job", "0.5"],
     "--gpus-per-job only applies to executors that give each job a share of GPUs: process, ray "
     "(not --executor local)"),
    (["--executor", "proces"], "unknown executor 'proces'; did you mean 'process'? (known: local, process, ray)"),
    (["--executor", "process", "--jobs", "0"], "--jobs must be at least 1"),
    (["--executor", "ray", "--cpus-per-job", "0"], "--cpus-per-job must be more than 0"),
])
def test_executor_options_that_do_not_fit_exit_2_before_anything_is_written(flags, message, tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "run"
    assert main(["run", "--model", "gaussian", "--dataset", "8gaussians", "--profile", "smoke", "--out", str(out),
                 "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_executor_ray_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import sys

    from harness.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "run"
    assert main(["run", "--model", "gaussian", "--dataset", "8gaussians", "--profile", "smoke", "--out", str(out),
                 "--no-progress", "--executor", "ray"]) == 2
    assert "pip install 'harness[ray]'" in capsys.readouterr().err
    assert not out.exists()


def test_run_with_the_process_executor_from_the_command_line(tmp_path, cli_env):
    import subprocess
    import sys

    import pandas as pd

    cli_env["HARNESS_PLUGINS"] = "tests.fake_plugins.fakes,tests.fake_plugins.crashers"
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--model", "stdnormal", "segv", "--dataset", "tiny",
                           "--profile", "smoke", "--metric", "nll", "--executor", "process", "--jobs", "2",
                           "--out", str(out), "--no-progress", "--format", "json"],
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # one job failed
    report = json.loads(done.stdout)  # nothing but the JSON document on stdout
    assert report["summary"]["ok"] == 1 and report["summary"]["failed"] == 1
    csv = pd.read_csv(out / "results.csv")
    assert "killed by SIGSEGV (11)" in csv.query("model == 'segv'")["reason"].iloc[0]


def test_a_request_no_node_offers_is_named_with_what_the_nodes_offer():
    from harness.executors.ray_cluster import unplaceable
    from harness.executors.resources import Request

    nodes = [{"Resources": {"CPU": 16.0, "GPU": 4.0}}, {"Resources": {"CPU": 8.0, "fast": 2.0},
                                                           "Labels": {"gpu_type": "h100", "ray.io/node-id": "x"}}]
    assert unplaceable(Request(8, 0), nodes) is None and unplaceable(Request(2, 0.5), nodes) is None
    why = unplaceable(Request(32, 1), nodes)
    assert "no node of the Ray cluster offers 32 CPUs, 1 GPUs for one job" in why
    assert "16 CPUs, 4 GPUs; 8 CPUs, 0 GPUs, fast=2 labelled gpu_type=h100)" in why
    assert unplaceable(Request(1, 1), [{"Resources": {"CPU": 8.0}}]) is not None  # GPUs asked of a CPU-only cluster
    assert unplaceable(Request(1, 0), []) is not None
    # Custom resources and labels: only the second node offers "fast" and carries the label.
    assert unplaceable(Request(8, 0, (("fast", 1.0),), (("gpu_type", "h100"),)), nodes) is None
    assert unplaceable(Request(1, 0.5, (("fast", 1.0),)), nodes) is not None  # no node has both
    why = unplaceable(Request(1, 0, (), (("gpu_type", "a100"),)), nodes)
    assert "offers 1 CPUs, 0 GPUs on nodes labelled gpu_type=a100" in why


def test_a_ray_task_on_a_node_without_the_run_directory_sends_the_jobs_files_back(host, tmp_path, monkeypatch):
    """The Ray task's own code, called here without Ray: its node's copy of the run directory lacks the
    coordinator's token, so what the job wrote into its artifact folder comes back with the attempt and
    the coordinator writes it into its run directory."""
    import sys

    from harness import artifacts
    from harness.executors import ray_task, transfer
    from harness.executors.isolation import ANSWERED
    from harness.executors.ray_cluster import RayExecutor
    from harness.executors.transfer import mark
    from harness.runner import Runner
    from tests.fake_plugins import file_writer

    host.add_plugin(file_writer, "file-writer")
    coordinator_dir, node_dir = tmp_path / "coordinator", tmp_path / "node"
    runner = Runner(host, get_profile("smoke"), coordinator_dir, seeds=[3], metrics=["nll"])
    (job,) = runner.plan(["leaves-a-file"], ["tiny"], False)
    monkeypatch.setenv("HARNESS_TEST_RUN_DIR", str(node_dir))  # the job writes on "its node"
    folder = artifacts.folder_name(job.model, job.dataset, job.seed, job.key)
    monkeypatch.setenv("HARNESS_TEST_ARTIFACT_FOLDER", folder)
    context = ray_task.TaskContext(pickle.dumps(runner.job_runner.setup), list(sys.path), {}, 60.0,
                                   str(node_dir), mark(coordinator_dir), "cpu", "run-1")
    try:
        attempt = ray_task.run_attempt(context, pickle.dumps(job), transfer.job_dirs(job), 1)
    finally:
        ray_task._close()
    assert attempt.outcome == ANSWERED and pickle.loads(attempt.result).status == JobStatus.OK
    assert attempt.files == {f"artifacts/{folder}/note.txt": b"fitted with seed 3"}
    assert folder == f"leaves-a-file-tiny-s3-{job.key[:8]}"
    assert not (node_dir / "artifacts" / folder).exists()  # the node's copy is gone
    result = RayExecutor(run_dir=coordinator_dir)._deliver(pickle.loads(attempt.result), attempt.files)
    assert result.status == JobStatus.OK and result.details["files_sent"] == {"files": 1, "bytes": 18}
    assert (coordinator_dir / "artifacts" / folder / "note.txt").read_text() == "fitted with seed 3"
