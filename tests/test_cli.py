"""The command line: exit codes, --help, --format json, suggestions for unknown names."""

import json
import subprocess
import sys

import pytest

from harness.cli import main
from tests.conftest import sigint_default


def test_unknown_model_exits_2_with_a_suggestion(capsys):
    assert main(["run", "--model", "gausian", "--profile", "smoke", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'gausian'" in err and "did you mean 'gaussian'" in err
    assert "Traceback" not in err


def test_unknown_dataset_and_profile_exit_2(capsys, tmp_path):
    assert main(["run", "--model", "gaussian", "--dataset", "8gausians", "--out", str(tmp_path)]) == 2
    assert "did you mean '8gaussians'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--model", "gaussian", "--profile", "huge"])
    assert exc.value.code == 2


def test_run_needs_a_selection(capsys):
    assert main(["run"]) == 2
    assert "--all" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["plugins"], ["report"], ["datasets"], ["evaluate"],
                                     ["evaluate-samples"], ["store"]])
def test_help_everywhere(command):
    out = subprocess.run([sys.executable, "-m", "harness", *command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage:" in out.stdout


def test_list_and_plugins_as_json(capsys):
    assert main(["list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    gauss = next(m for m in listed["models"] if m["name"] == "gaussian")
    assert gauss["likelihood"] == "exact" and "sample" in gauss["capabilities"]
    assert any(d["name"] == "8gaussians" for d in listed["datasets"])
    assert any(m["name"] == "nll" for m in listed["metrics"])
    assert main(["plugins", "--format", "json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins["gaussian"]["status"] == "ok" and "harness_register_models" in plugins["gaussian"]["hooks"]


def test_plugins_lists_a_broken_plugin_with_its_error(cli_env):
    cli_env["HARNESS_PLUGINS"] = "tests.fake_plugins.broken"
    out = subprocess.run([sys.executable, "-m", "harness", "plugins", "--format", "json"], env=cli_env,
                         capture_output=True, text=True)
    assert out.returncode == 0
    broken = next(p for p in json.loads(out.stdout) if p["name"] == "tests.fake_plugins.broken")
    assert broken["status"] == "failed" and "deliberately broken" in broken["error"]


def test_run_exit_codes_and_report(cli_env, tmp_path):
    base = [sys.executable, "-m", "harness", "run", "--dataset", "tiny", "--profile", "smoke", "--metric", "nll",
            "--no-progress"]
    ok = subprocess.run(base + ["--model", "stdnormal", "--out", str(tmp_path / "ok")], env=cli_env,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "## tiny" in ok.stdout and "(x)" in ok.stdout
    bad = subprocess.run(base + ["--model", "stdnormal", "boom", "--out", str(tmp_path / "bad"), "--format", "json"],
                         env=cli_env, capture_output=True, text=True)
    assert bad.returncode == 1
    payload = json.loads(bad.stdout)
    assert payload["summary"]["failed"] == 1 and payload["summary"]["ok"] == 1
    statuses = {(r["model"], r["status"]) for r in payload["results"]}
    assert ("boom", "failed") in statuses and ("stdnormal", "ok") in statuses
    rep = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "bad")], env=cli_env,
                         capture_output=True, text=True)
    assert rep.returncode == 0 and "## tiny" in rep.stdout
    missing = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "nowhere")], env=cli_env,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no results" in missing.stderr and "Traceback" not in missing.stderr


# ----------------------------------------------------------------------------- the first ten minutes

def test_an_explicit_pair_with_missing_data_exits_2_naming_the_files(tmp_path, capsys):
    from harness.cli import main

    code = main(["run", "--model", "vae", "--dataset", "mnist", "--profile", "smoke", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "train-images-idx3-ubyte" in err and "t10k-labels-idx1-ubyte" in err
    assert "python -m harness datasets fetch mnist" in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_an_explicit_incompatible_pair_exits_2_with_what_fits(tmp_path, capsys):
    from harness.cli import main

    code = main(["run", "--model", "pixelcnn", "--dataset", "8gaussians", "--profile", "smoke",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pixelcnn on 8gaussians" in err and "8gaussians is continuous" in err
    assert "pixelcnn runs on:" in err and "digits" in err and "models for 8gaussians:" in err and "gmm" in err


def test_a_mixed_selection_runs_and_lists_each_skip_after_the_tables(tmp_path, capsys):
    from harness.cli import main

    code = main(["run", "--model", "gaussian", "pixelcnn", "--dataset", "8gaussians", "mnist", "--profile", "smoke",
                 "--metric", "nll", "--data-root", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    tail = out[out.index("## 8gaussians"):]
    assert "skipped 3 model/dataset pair(s)" in tail
    lines = [line for line in tail.splitlines() if line.startswith("  ")]
    assert any(line.split()[:2] == ["data", "missing"] and "gaussian / mnist" in line for line in lines)
    assert any("incompatible" in line and "pixelcnn / 8gaussians" in line for line in lines)
    assert any("pixelcnn / mnist" in line for line in lines)


def test_datasets_fetch_and_check_are_commands(tmp_path, capsys):
    from harness.cli import main

    assert main(["datasets", "fetch", "digits"]) == 2
    assert "nothing to fetch for 'digits'" in capsys.readouterr().err
    assert main(["datasets", "check", "mnist", "--data-root", str(tmp_path)]) == 2
    assert "python -m harness datasets fetch mnist" in capsys.readouterr().err
    assert main(["datasets", "check", "digits", "8gaussians"]) == 0
    out = capsys.readouterr().out
    assert "digits: ok, 1257/180/360" in out and "8gaussians: ok" in out
    assert main(["datasets", "check"]) == 2


def test_interrupt_writes_the_tables_of_finished_jobs_and_says_how_to_resume(tmp_path, cli_env):
    """SIGINT mid-run: results.csv and report.md hold the finished jobs, exit 130, and the printed
    command resumes the rest."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    import pandas as pd

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "run", "--model", "sleepy", "--dataset", "tiny", "--seeds", "6",
           "--profile", "smoke", "--metric", "nll", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)

    def ok_jobs():
        try:
            db = sqlite3.connect(out / "results.sqlite")
            try:
                return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'ok'").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 120
    while ok_jobs() < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    finished = ok_jobs()
    assert 2 <= finished < 6
    csv = pd.read_csv(out / "results.csv")
    assert sorted(csv.query("metric == 'nll'")["seed"].unique().tolist()).__len__() == finished
    assert (out / "report.md").exists() and "## tiny" in (out / "report.md").read_text()
    assert f"{finished} of 6 jobs finished" in err
    resume = err.split("Resume with:")[1].strip().split()
    assert resume[:3] == ["python", "-m", "harness"] and "--resume" in resume
    done = subprocess.run([sys.executable, *resume[1:], "--no-progress"], env=cli_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{finished} reused" in done.stdout and ok_jobs() == 6
