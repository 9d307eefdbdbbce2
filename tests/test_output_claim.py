"""One writer per results directory, and no silent mixing: a second run into the same --out while the
first is writing is refused with the first's pid (two real processes), a run into a non-empty --out
asks for --resume or --overwrite, and --overwrite deletes harness's files only."""

import sqlite3
import subprocess
import sys
import time

import pytest

from harness.cli import main
from harness.storage import lock

RUN = ["run", "--model", "stdnormal", "--dataset", "tiny", "--profile", "smoke", "--metric", "nll", "--no-progress"]


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def jobs(out):
    db = sqlite3.connect(out / "results.sqlite")
    try:
        return sorted(db.execute("SELECT model, seed FROM jobs").fetchall())
    finally:
        db.close()


def test_a_second_run_into_a_directory_being_written_is_refused_with_the_writers_pid(tmp_path, cli_env):
    """The first run is held inside its second job's fit (tests.crash.run_until) for as long as the test needs."""
    out, mark = tmp_path / "run", tmp_path / "mark"
    args = ["run", "--model", "stdnormal", "--dataset", "tiny", "--seeds", "3", "--profile", "smoke", "--metric",
            "nll", "--out", str(out), "--no-progress"]
    held = dict(cli_env, HARNESS_TEST_CRASH_AT="fit:2", HARNESS_TEST_CRASH_MARK=str(mark))
    first = subprocess.Popen([sys.executable, "-m", "tests.crash.run_until", *args], env=held,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not mark.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "harness", *args, "--resume"], env=cli_env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert f"being written by another harness process (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()  # SIGKILL: the operating system drops its lock
        first.wait()
        first.stderr.close()
    assert jobs(out) == [("stdnormal", 0)]
    after = subprocess.run([sys.executable, "-m", "harness", *args, "--resume"], env=cli_env, capture_output=True,
                           text=True, timeout=300)
    assert after.returncode == 0 and "1 reused" in after.stdout, after.stderr
    assert len(jobs(out)) == 3


def test_the_lock_is_counted_within_a_process_and_refuses_another(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from harness.storage import lock; "
                               f"lock.acquire({str(tmp_path)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.DirectoryBusy, match=f"pid {holder.pid}"):
            lock.acquire(tmp_path)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    lock.acquire(tmp_path)
    lock.acquire(tmp_path)
    lock.release(tmp_path)
    assert lock.held(tmp_path)
    lock.release(tmp_path)
    assert not lock.held(tmp_path)


def test_a_non_empty_out_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, *RUN, "--out", out)[0] == 0
    before = (out / "results.sqlite").read_bytes()
    code, _, err = cli(capsys, *RUN, "--seeds", "2", "--out", out)
    assert code == 2 and "--resume" in err and "--overwrite" in err and "is not empty" in err
    assert (out / "results.sqlite").read_bytes() == before  # nothing written
    code, _, err = cli(capsys, *RUN, "--out", out, "--resume", "--overwrite")
    assert code == 2 and "give one" in err

    (out / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "run", "--model", "sleepy", "--dataset", "tiny", "--profile", "smoke", "--metric", "nll",
                       "--set", "sleepy.sleep=0", "--no-progress", "--out", out, "--overwrite")
    assert code == 0 and "--overwrite: deleted" in err
    assert jobs(out) == [("sleepy", 0)]  # the earlier run's job is gone
    assert (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in (out / "artifacts").iterdir()][0].startswith("sleepy-")


def test_a_file_as_out_and_an_unusable_out_are_usage_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, *RUN, "--out", tmp_path / "file")
    assert code == 2 and "is a file" in err
