"""The command line: exit codes, --help, --format json, suggestions for unknown names."""

import json
import subprocess
import sys

import pytest

from harness.cli import main


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


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["plugins"], ["report"], ["datasets"]])
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
    cli_env["HARNESS_PLUGINS"] = "tests.plugins.broken"
    out = subprocess.run([sys.executable, "-m", "harness", "plugins", "--format", "json"], env=cli_env,
                         capture_output=True, text=True)
    assert out.returncode == 0
    broken = next(p for p in json.loads(out.stdout) if p["name"] == "tests.plugins.broken")
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
