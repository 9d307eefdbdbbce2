"""A run killed with SIGKILL and restarted with --resume redoes only the unfinished jobs."""

import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd


def ok_jobs(out):
    path = out / "results.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_sigkill_then_resume_redoes_only_unfinished_jobs(tmp_path, cli_env):
    out = tmp_path / "run"
    log = tmp_path / "fits.log"
    cli_env["HARNESS_TEST_FIT_LOG"] = str(log)
    cmd = [sys.executable, "-m", "harness", "run", "--model", "sleepy", "--dataset", "tiny", "--seeds", "6",
           "--profile", "smoke", "--metric", "nll", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while ok_jobs(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = ok_jobs(out)
    assert 2 <= finished_before < 6, "the kill should land mid-run"
    db = sqlite3.connect(out / "results.sqlite")
    done_seeds = {row[0] for row in db.execute("SELECT seed FROM jobs WHERE status = 'ok'")}
    db.close()
    lines_before = len(log.read_text().splitlines())

    resumed = subprocess.run(cmd + ["--resume"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert ok_jobs(out) == 6
    new_lines = log.read_text().splitlines()[lines_before:]
    rerun_seeds = sorted(int(line.split()[1]) for line in new_lines if line.startswith("start"))
    # Exactly the jobs not finished before the kill ran again, each once.
    assert rerun_seeds == sorted(set(range(6)) - done_seeds)
    results = pd.read_csv(out / "results.csv")
    assert sorted(results.query("metric == 'nll'")["seed"]) == list(range(6))
    assert "6 reused" not in resumed.stdout and f"{finished_before} reused" in resumed.stdout
