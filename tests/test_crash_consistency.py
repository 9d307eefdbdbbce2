"""A run killed with SIGKILL at ten moments (in a fit, in a metric, inside the store's transaction,
while an artifact or a report file is being written), resumed each time, ends with exactly what an
uninterrupted run leaves: the same job keys, equal exact likelihoods, the same results.csv and the same
saved models; and after every kill, no artifact that reads as valid is half-written."""

import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from harness import artifacts

PHASES = ("fit", "metric", "store", "artifact")  # each job passes every one of them once
RUN = ["run", "--model", "stdnormal", "sleepy", "--dataset", "tiny", "--seeds", "5", "--profile", "smoke",
       "--metric", "nll", "--set", "sleepy.sleep=0.05", "--no-progress"]
JOBS = 10


def launch(out, env, crash_at=None, resume=True):
    env = dict(env)
    if crash_at:
        env["HARNESS_TEST_CRASH_AT"] = crash_at
    cmd = [sys.executable, "-m", "tests.crash.run_until", *RUN, "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_at(out, env, crash_at, mark, rng, resume):
    """Run until ``crash_at`` is reached, then SIGKILL a random few milliseconds later."""
    mark.unlink(missing_ok=True)
    proc = launch(out, env, crash_at, resume)
    deadline = time.monotonic() + 300
    while not mark.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before reaching {crash_at}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"{crash_at} was never reached"
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def consistent(out):
    """What a reader may see between the kill and the resume: a sound store, and every artifact that reads
    as one verifies; a stored ok job's artifact is there."""
    db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = dict(db.execute("SELECT key, status FROM jobs").fetchall())
    finally:
        db.close()
    root = artifacts.artifacts_dir(out)
    listed = artifacts.list_artifacts(root)
    for path, meta in listed:
        artifacts.verify(path, meta)  # never a half-written one under a real name
    saved = {meta["key"] for _, meta in listed}
    assert {k for k, s in stored.items() if s == "ok"} <= saved
    if root.is_dir():
        for path in root.iterdir():
            assert path.name.startswith(artifacts.TEMP_PREFIX) or (path / artifacts.META_FILE).is_file()
    return stored


def job_rows(out):
    db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT key, status FROM jobs").fetchall())
    finally:
        db.close()


def saved_models(out):
    found = {}
    for path, meta in artifacts.list_artifacts(artifacts.artifacts_dir(out)):
        artifacts.verify(path, meta)
        found[meta["key"]] = (meta["state"]["sha256"], np.load(path / artifacts.SAMPLES_FILE))
    return found


@pytest.mark.slow
def test_ten_kills_then_resume_leave_what_an_uninterrupted_run_leaves(tmp_path, cli_env):
    rng = random.Random(20261207)
    # Eight kills while jobs run (each phase twice, in a random order, at the first or second job that
    # reaches it), then two while the reports are written (all jobs done by then).
    plan = [f"{phase}:{rng.randint(1, 2)}" for phase in rng.sample(PHASES * 2, 8)]
    plan += [f"report:{rng.randint(1, 4)}" for _ in range(2)]
    out, mark = tmp_path / "killed", tmp_path / "mark"
    cli_env["HARNESS_TEST_CRASH_MARK"] = str(mark)
    for i, crash_at in enumerate(plan):
        kill_at(out, cli_env, crash_at, mark, rng, resume=i > 0)
        consistent(out)
    assert (out / "report.html.tmp").exists() or any(out.glob("*.tmp"))  # a report file was cut half-way
    final = launch(out, cli_env, resume=True)
    assert final.wait(timeout=600) == 0, final.stderr.read()
    final.stderr.close()

    reference = tmp_path / "reference"
    plain = launch(reference, cli_env, resume=False)
    assert plain.wait(timeout=600) == 0, plain.stderr.read()
    plain.stderr.close()

    killed, whole = job_rows(out), job_rows(reference)
    assert killed == whole and len(whole) == JOBS and set(whole.values()) == {"ok"}
    a, b = (pd.read_csv(d / "results.csv").drop(columns=["run_id", "source"]) for d in (out, reference))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert (a["estimator"] == "exact").all() and len(a) == JOBS
    ours, theirs = saved_models(out), saved_models(reference)
    assert ours.keys() == theirs.keys() == whole.keys()
    for key, (digest, samples) in theirs.items():
        assert ours[key][0] == digest and np.array_equal(ours[key][1], samples)
    assert not [p for p in artifacts.artifacts_dir(out).iterdir() if p.name.startswith(artifacts.TEMP_PREFIX)]
    assert not list(out.glob("*.tmp"))
