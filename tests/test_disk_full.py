"""Writes limited (RLIMIT_FSIZE in the run's process, SIGXFSZ ignored so a write past it fails with
EFBIG as a full disk's fails with ENOSPC): the job whose model cannot be saved fails with the reason
and the run goes on; a store write that fails stops the run with exit 1, a message and the store as it
was; --resume completes the run once there is room."""

import signal
import sqlite3
import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")

RUN = ["run", "--dataset", "tiny", "--profile", "smoke", "--metric", "nll", "--no-progress"]


def harness(env, out, *args, limit=None):
    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "harness", *RUN, "--out", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=600, preexec_fn=limited if limit else None)


def stored(out):
    db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {(m, s): (status, reason) for m, s, status, reason in
                db.execute("SELECT model, seed, status, reason FROM jobs")}
    finally:
        db.close()


def test_a_full_disk_fails_the_job_it_stops_then_resume_completes_it(tmp_path, cli_env):
    cli_env["HARNESS_PLUGINS"] += ",tests.fake_plugins.bulky"
    out = tmp_path / "run"
    # 1 MB per file: the store, reports and stdnormal's model fit; bulky's 2 MB model does not.
    done = harness(cli_env, out, "--model", "stdnormal", "bulky", limit=1_000_000)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "bulky / tiny (seed 0): saving the model: cannot write: File too large" in done.stderr
    jobs = stored(out)
    assert jobs[("stdnormal", 0)][0] == "ok"
    assert jobs[("bulky", 0)][0] == "failed" and "a file size limit was reached" in jobs[("bulky", 0)][1]
    assert "--resume" in jobs[("bulky", 0)][1]
    folders = [p.name for p in (out / "artifacts").iterdir()]
    assert len(folders) == 1 and folders[0].startswith("stdnormal-")  # no half-written model, no temporary

    # So little room (40 kB a file) that the store's log cannot take the next results: the run stops, the
    # store is whole.
    done = harness(cli_env, out, "--model", "stdnormal", "--seeds", "6", "--resume", limit=40_000)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: cannot write" in done.stderr and "results.sqlite" in done.stderr and "--resume" in done.stderr
    jobs = stored(out)
    assert set(jobs) < {("stdnormal", s) for s in range(6)} | {("bulky", 0)}
    assert all(status == "ok" for (model, _), (status, _) in jobs.items() if model == "stdnormal")

    done = harness(cli_env, out, "--model", "stdnormal", "bulky", "--seeds", "6", "--resume")
    assert done.returncode == 0, done.stderr
    jobs = stored(out)
    assert len(jobs) == 12 and {status for status, _ in jobs.values()} == {"ok"}
    assert "reused" in done.stdout
