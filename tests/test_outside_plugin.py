"""Executors and report formats are registered kinds: an outside plugin (tests/fake_plugins/outside.py)
adds an executor that runs a whole `run` and a report format that `report DIR --format` writes, both
listed with the plugin that registered them; the runner asks the executor what it needs to know; a
duplicate name is refused naming both plugins; a spec that breaks the contract is refused."""

import json
import math

import pandas as pd
import pytest

import harness.runner
from harness import hookimpl
from harness.cli import main
from harness.executors import ExecutorSpec, InProcess
from harness.host import PluginError, PluginHost
from harness.profiles import get_profile
from harness.report import ReportFormatSpec
from harness.runner import Runner
from harness.store import Store
from tests.fake_plugins import fakes, outside

PLUGINS = "tests.fake_plugins.fakes,tests.fake_plugins.outside"


@pytest.fixture
def with_outside(monkeypatch):
    """The CLI in this process sees the fake plugins and the outside plugin."""
    monkeypatch.setenv("HARNESS_PLUGINS", PLUGINS)
    monkeypatch.delenv("HARNESS_DISABLE_PLUGINS", raising=False)


def analytic_nll() -> float:
    """Mean NLL of N(0, I) on the tiny test split, computed here (the independent reference)."""
    host = PluginHost()
    host.add_plugin(fakes, "fakes")
    x = host.dataset("tiny").load(None).test.x.double()
    return float((0.5 * (x**2).sum(1) + math.log(2 * math.pi)).mean())


def stored(directory):
    store = Store(directory, read_only=True)
    try:
        return store.results()
    finally:
        store.close()


def test_a_run_on_the_outside_executor_stores_every_job_and_the_outside_format_renders_it(
        with_outside, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", "stdnormal", "--dataset", "tiny", "--seeds", "2", "--profile", "smoke",
                 "--metric", "nll", "--executor", "outside", "--jobs", "1", "--out", str(out), "--no-progress",
                 "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["summary"]["ok"] == 2 and document["summary"]["failed"] == 0
    jobs = stored(out)
    keys = set(jobs["key"])
    assert len(keys) == 2 and set((out / outside.LOG).read_text().split()) == keys  # it ran them, all
    assert jobs.query("metric == 'nll'")["value"].to_numpy() == pytest.approx([analytic_nll()] * 2, rel=1e-5)
    assert {"csv", "json", "markdown", "html"} <= set(document["files"])  # the formats every run writes

    assert main(["report", str(out), "--format", "outside"]) == 0
    captured = capsys.readouterr()
    written = out / "outside.txt"
    assert f"wrote {written}" in captured.err and captured.out == ""
    lines = written.read_text().splitlines()
    mean = pd.read_csv(out / "results.csv").query("metric == 'nll'")["value"].mean()
    assert lines[0] == "outside report of harness results"
    (dataset, model, label, value, seeds), = (line.split() for line in lines[1:])
    assert (dataset, model, label, seeds) == ("tiny", "stdnormal", "nll", "seeds=2")
    assert float(value) == pytest.approx(mean)


def test_plugins_and_list_name_the_plugin_that_registered_each(with_outside, capsys):
    assert main(["plugins", "--format", "json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    mine = plugins["tests.fake_plugins.outside"]
    assert mine["status"] == "ok"
    assert mine["registers"] == {"executors": ["outside"], "report_formats": ["outside"]}
    assert plugins["ray_executor"]["registers"] == {"executors": ["ray"]}
    assert plugins["csv_json_results"]["registers"] == {"report_formats": ["csv", "json"]}
    assert main(["list", "executors", "--format", "json"]) == 0
    executors = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert executors["outside"]["plugin"] == "tests.fake_plugins.outside"
    assert executors["outside"]["accepts"] == ["--jobs"]
    assert executors["local"]["plugin"] == "local_executor" and executors["local"]["accepts"] == []
    assert main(["list", "report-formats", "--format", "json"]) == 0
    formats = {f["name"]: f for f in json.loads(capsys.readouterr().out)}
    assert formats["outside"] == {"name": "outside", "file": "outside.txt", "every_run": False,
                                  "plugin": "tests.fake_plugins.outside", "description": "one line per summarised cell"}
    assert formats["html"]["every_run"] and not formats["latex"]["every_run"]


def test_options_are_checked_against_what_the_executor_declares(with_outside, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--model", "stdnormal", "--dataset", "tiny", "--profile", "smoke", "--out", str(out),
            "--no-progress"]
    assert main([*base, "--executor", "outside", "--ray-address", "auto", "--retries", "1"]) == 2
    err = capsys.readouterr().err
    assert ("--ray-address only applies to executors that join a cluster at an address: ray (not --executor outside)"
            in err)
    assert "--retries only applies to executors that retry a job whose worker died: process, ray" in err
    assert main([*base, "--executor", "local", "--jobs", "3"]) == 2
    assert "run several jobs at once: outside, process, ray (not --executor local)" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_runs_on_the_executor_it_is_given(with_outside, tmp_path, capsys):
    trained = tmp_path / "trained"
    assert main(["run", "--model", "stdnormal", "--dataset", "tiny", "--profile", "smoke", "--metric", "nll",
                 "--out", str(trained), "--no-progress", "--format", "json"]) == 0
    capsys.readouterr()
    assert not (trained / outside.LOG).exists()  # the default executor is local
    again = tmp_path / "again"
    assert main(["evaluate", str(trained), "--out", str(again), "--executor", "outside", "--no-progress",
                 "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["summary"]["ok"] == 1
    assert (again / outside.LOG).read_text().split() == list(stored(again)["key"].unique())
    assert main(["evaluate", str(trained), "--out", str(tmp_path / "no"), "--executor", "local", "--retries", "2"]) == 2
    assert not (tmp_path / "no").exists()


def test_unknown_names_are_usage_errors_with_a_suggestion(with_outside, tmp_path, capsys):
    assert main(["run", "--model", "stdnormal", "--dataset", "tiny", "--out", str(tmp_path / "r"),
                 "--executor", "outsid"]) == 2
    assert "unknown executor 'outsid'; did you mean 'outside'?" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--format", "outsde"]) == 2
    assert "unknown report format 'outsde'; did you mean 'outside'?" in capsys.readouterr().err
    assert main(["report", str(tmp_path), str(tmp_path), "--format", "outside"]) == 2
    assert "--format outside takes one results directory" in capsys.readouterr().err


@pytest.mark.parametrize("in_process, rounds", [(True, 2), (False, 0)])
def test_the_runner_calibrates_between_jobs_only_when_they_run_in_its_process(host, tmp_path, in_process, rounds,
                                                                             monkeypatch):
    """Three jobs: two rounds between them when the executor says its jobs run in the coordinator's
    process (no minimum interval between rounds here), none when they run beside it; the machine
    fingerprint records the executor's name and workers."""
    monkeypatch.setattr(harness.runner, "CALIBRATION_INTERVAL_S", 0.0)
    executor = outside.OutsideExecutor(in_process=in_process)
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0, 1, 2], metrics=["nll"], executor=executor)
    store, summary = runner.run(runner.plan(["stdnormal"], ["tiny"], False))
    try:
        machine = store.runs()[-1]["info"]["machine"]
    finally:
        store.close()
    assert summary["ok"] == 3
    assert machine["calibration"]["between_jobs"] == rounds
    assert machine["fingerprint"]["executor"] == "outside" and machine["fingerprint"]["workers"] == 1
    assert InProcess.in_process and InProcess.workers == 1  # the built-in local executor answers the same


def _registering(hook: str, spec):
    class Plugin:
        pass

    def register_it(self, register):
        register(spec)

    register_it.__name__ = hook
    setattr(Plugin, hook, hookimpl(register_it))
    return Plugin()


@pytest.mark.parametrize("hook, spec, kind", [
    ("harness_register_executors", ExecutorSpec("outside", lambda options: None), "executor"),
    ("harness_register_report_formats", ReportFormatSpec("outside", str, "other.txt"), "report format"),
])
def test_a_duplicate_name_is_an_error_naming_both_plugins(hook, spec, kind):
    h = PluginHost()
    h.add_plugin(outside, "outside-plugin")
    h.add_plugin(_registering(hook, spec), "copycat")
    with pytest.raises(PluginError) as err:
        h.registry
    message = str(err.value)
    assert f"{kind} name 'outside'" in message and "'outside-plugin'" in message and "'copycat'" in message


def test_specs_that_break_the_contract_are_refused():
    with pytest.raises(ValueError, match="unknown options"):
        ExecutorSpec("x", lambda options: None, accepts={"nodes"})
    with pytest.raises(ValueError, match="factory must be callable"):
        ExecutorSpec("x", None)
    with pytest.raises(ValueError, match="file must be a file name"):
        ReportFormatSpec("x", str, "sub/x.txt")
    with pytest.raises(ValueError, match="render must be callable"):
        ReportFormatSpec("x", "not callable")
    h = PluginHost()
    h.add_plugin(_registering("harness_register_executors", ReportFormatSpec("x", str)), "confused")
    with pytest.raises(PluginError, match="expected ExecutorSpec"):
        h.registry


def test_registering_the_built_in_executors_does_not_import_ray(cli_env):
    """Ray is imported when a run uses the ray executor, not when the plugins are loaded and listed."""
    import subprocess
    import sys

    code = ("import sys; from harness.host import get_host; host = get_host(); "
            "assert 'ray' in host.registry.executors; print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
