"""The Ray executor on a local Ray cluster with 2 CPUs (one for the module; CI installs harness[ray]):
the same exact likelihoods as the local and process executors, a segfault and a native hang failing
only their jobs, --retries, Ctrl-C cancelling what is outstanding, and a run killed mid-way and
resumed, which redoes only the unfinished jobs."""

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from harness.executors import InProcess, ProcessPool
from harness.hparams import parse_set
from harness.jobs import JobStatus
from harness.profiles import get_profile
from harness.runner import Runner
from tests.fake_plugins import crashers


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray cluster with 2 CPUs for this module; its address, for the command line."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed; CI must install harness[ray] (see .ci/run)")
        pytest.skip("Ray is not installed: python -m pip install 'harness[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def ray_executor(**kw):
    from harness.executors.ray_cluster import RayExecutor

    return RayExecutor(jobs=2, **kw)


def run(host, out, models, datasets, executor, **kw):
    runner = Runner(host, get_profile("smoke"), out, seeds=kw.pop("seeds", [0]), metrics=["nll"],
                    executor=executor, **kw)
    store, summary = runner.run(runner.plan(models, datasets, False))
    df = store.results()
    store.close()
    return df, summary


def test_local_process_and_ray_give_identical_exact_likelihoods(host, tmp_path, ray_address):
    """The smoke selection gaussian, gmm, made x 8gaussians, checkerboard (MADE trained for fewer steps
    to keep the test short) under the three executors."""
    values = {}
    for name, executor in (("local", InProcess()), ("process", ProcessPool(2)), ("ray", ray_executor())):
        df, summary = run(host, tmp_path / name, ["gaussian", "gmm", "made"], ["8gaussians", "checkerboard"], executor,
                          overrides=[parse_set("made.steps=20")])
        nll = df.query("metric == 'nll'")
        assert summary["ok"] == 6 and len(nll) == 6
        assert (nll["status"] == JobStatus.OK).all() and (nll["estimator"] == "exact").all()
        values[name] = nll.set_index(["model", "dataset"])["value"].sort_index()
    for name in ("process", "ray"):
        pd.testing.assert_series_equal(values[name], values["local"], check_exact=False, rtol=1e-6, check_names=False)


def test_segfault_and_native_hang_under_ray_fail_only_their_jobs_and_retries_apply(host, tmp_path, ray_address,
                                                                                  monkeypatch):
    host.add_plugin(crashers, "crashers")
    # Set after the cluster's workers started: the job's HARNESS_* variables travel with it.
    monkeypatch.setenv("HARNESS_TEST_CRASH_MARKER", str(tmp_path / "crashed-once"))
    df, summary = run(host, tmp_path / "run", ["segv", "stdnormal", "deadlock", "gaussian", "flaky"], ["tiny"],
                      ray_executor(retries=1), job_timeout=4)
    assert summary["ok"] == 3 and summary["failed"] == 2
    db = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    jobs = {model: (status, reason) for model, status, reason in db.execute("SELECT model, status, reason FROM jobs")}
    db.close()
    assert jobs["segv"] == (JobStatus.FAILED, "worker process died: killed by SIGSEGV (11) (on each of 2 attempts)")
    assert jobs["deadlock"][0] == JobStatus.FAILED and jobs["deadlock"][1].startswith("timed out after 4 s")
    assert "killed with its worker" in jobs["deadlock"][1]  # once, not retried
    assert jobs["flaky"] == (JobStatus.OK, "")  # segfaulted once, then ran on a fresh worker
    nll = df.query("metric == 'nll'").set_index("model")
    assert set(nll.index) == {"stdnormal", "gaussian", "flaky"} and (nll["status"] == JobStatus.OK).all()


def ok_jobs(out):
    try:
        db = sqlite3.connect(out / "results.sqlite")
        try:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'ok'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def ok_seeds(out):
    db = sqlite3.connect(out / "results.sqlite")
    try:
        return {row[0] for row in db.execute("SELECT seed FROM jobs WHERE status = 'ok'")}
    finally:
        db.close()


def started_seeds(log, skip=0):
    return sorted(int(line.split()[1]) for line in log.read_text().splitlines()[skip:] if line.startswith("start"))


def wait_for(out, proc, count):
    deadline = time.monotonic() + 240
    while ok_jobs(out) < count and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)


def test_interrupting_a_ray_run_cancels_its_outstanding_tasks(host, tmp_path, ray_address, monkeypatch):
    """Ctrl-C (a KeyboardInterrupt in the coordinator) after two jobs: those two are stored, the tasks
    still running or queued are cancelled, so no further job starts."""
    from harness import hookimpl

    log = tmp_path / "fits.log"
    monkeypatch.setenv("HARNESS_TEST_FIT_LOG", str(log))

    class CtrlC:
        @hookimpl
        def harness_job_finished(self, run, job, result):
            if ok_jobs(tmp_path / "run") >= 2:
                raise KeyboardInterrupt

    host.add_plugin(CtrlC(), "ctrl-c")
    executor = ray_executor()
    executor.jobs = None  # every task submitted at once: without cancelling, all of them would run
    with pytest.raises(KeyboardInterrupt):
        run(host, tmp_path / "run", ["sleepy"], ["tiny"], executor, seeds=list(range(6)),
            overrides=[parse_set("sleepy.sleep=1.0")])
    assert ok_jobs(tmp_path / "run") == 2 and not executor._inflight
    time.sleep(5)  # time enough for the remaining tasks to start, were they not cancelled
    assert len(set(started_seeds(log))) <= 4  # the two finished and at most the two that were running


def test_ray_run_killed_midway_then_resumed_redoes_only_unfinished_jobs(tmp_path, cli_env, ray_address):
    """The coordinator of a run on an existing Ray cluster (--ray-address) is killed with SIGKILL;
    --resume runs exactly the jobs that had not finished, each once."""
    out, log = tmp_path / "run", tmp_path / "fits.log"
    cli_env["HARNESS_TEST_FIT_LOG"] = str(log)
    cmd = [sys.executable, "-m", "harness", "run", "--model", "sleepy", "--dataset", "tiny", "--seeds", "6",
           "--profile", "smoke", "--metric", "nll", "--out", str(out), "--no-progress",
           "--executor", "ray", "--ray-address", ray_address]
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(out, proc, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = ok_jobs(out)
    assert 2 <= before < 6, "the kill should land mid-run"
    time.sleep(2)  # Ray ends the dead coordinator's tasks; let them go before counting what started
    done, lines = ok_seeds(out), len(log.read_text().splitlines())

    resumed = subprocess.run(cmd + ["--resume"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert ok_jobs(out) == 6 and f"{before} reused" in resumed.stdout
    assert started_seeds(log, lines) == sorted(set(range(6)) - done)
    results = pd.read_csv(out / "results.csv")
    assert sorted(results.query("metric == 'nll'")["seed"]) == list(range(6))
