"""Experiment trackers in the core: what a chosen tracker hears (run start, each stored job that ran,
the written report files), from the coordinator only; a failing tracker warns once and costs nothing;
--resume logs no job twice; bad choices and a missing extra exit 2 before anything runs; the config
file's [tracking] table; the tracker kind in the registry; the keys trackers log under."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.config import read_config
from harness.contracts import TrackedValue, TrackerSpec, value_key
from harness.host import PluginError, PluginHost
from harness_plugins.trackers.mlflow import mlflow_key
from tests.fake_plugins import trackers as fake_trackers
from tests.fake_plugins.trackers import read
from tests.conftest import sigint_default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def fake_plugins(monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes,tests.fake_plugins.trackers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(out, *extra):
    return main(["run", "--model", "sleepy", "boom", "--dataset", "tiny", "--set", "sleepy.sleep=0.01",
                 "--profile", "smoke", "--metric", "nll", "--out", str(out), "--no-progress", *extra])


def jobs(events) -> dict:
    return {e["record"]["name"]: e for e in events if e["event"] == "job"}


def logged_jobs(path) -> int:
    return sum(e["event"] == "job" for e in read(path))


def test_a_tracker_hears_the_start_each_job_once_with_its_numbers_and_the_written_reports(tmp_path, capsys):
    log = tmp_path / "calls.jsonl"
    out = tmp_path / "run"
    assert run(out, "--seeds", "2", "--tracker", "recording", "--tracker-arg", f"log={log}") == 1  # boom fails
    events = read(log)
    assert [e["event"] for e in events] == ["start"] + ["job"] * 4 + ["finish"]
    assert {e["pid"] for e in events} == {os.getpid()}
    start = events[0]
    assert start["command"] == "run" and start["jobs"] == 4 and start["name"] == "run"
    assert start["tags"]["harness.profile"] == "smoke" and start["tags"]["harness.machine"]
    logged = jobs(events)
    assert set(logged) == {"sleepy/tiny/seed0", "sleepy/tiny/seed1", "boom/tiny/seed0", "boom/tiny/seed1"}
    results = pd.read_csv(out / "results.csv")
    for seed in (0, 1):
        record = logged[f"sleepy/tiny/seed{seed}"]["record"]
        assert record["status"] == "ok" and record["hparams"] == {"sleep": 0.01}
        assert record["tags"]["harness.job_key"] == record["key"]
        stored = results.query(f"model == 'sleepy' and seed == {seed}").set_index("id")
        by_id = {m["identity"]: m for m in record["measurements"]}
        assert set(by_id) == set(stored.index) == {"nll"}
        assert by_id["nll"]["value"] == pytest.approx(stored.loc["nll", "value"], rel=1e-12)
        assert by_id["nll"]["stderr"] == pytest.approx(stored.loc["nll", "stderr"], rel=1e-12)
        assert by_id["nll"]["key"] == "nll.exact" and by_id["nll"]["unit"] == "nats"
        # what the job saved beside its model, without the weights
        assert set(logged[f"sleepy/tiny/seed{seed}"]["files"]) == {"samples.npy", "meta.json", "density.npz"}
    failed = logged["boom/tiny/seed0"]["record"]
    assert failed["status"] == "failed" and "deliberate failure in fit" in failed["reason"]
    finish = events[-1]
    assert finish["status"] == "failed" and finish["summary"] == {"ok": 2, "failed": 2, "skipped": 0, "reused": 0}
    assert {"html", "json", "config"} <= set(finish["files"])
    assert all(exists for _, exists in finish["files"].values())  # written before the tracker was told
    assert f"recording: logged to file {log}" in capsys.readouterr().out


def test_resume_logs_only_the_jobs_it_runs(tmp_path):
    out = tmp_path / "run"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert run(out, "--tracker", "recording", "--tracker-arg", f"log={first}") == 1
    assert run(out, "--seeds", "2", "--resume", "--tracker", "recording", "--tracker-arg", f"log={second}") == 1
    # boom failed, so --resume runs it again: that is a new attempt, logged once more.
    assert set(jobs(read(first))) == {"sleepy/tiny/seed0", "boom/tiny/seed0"}
    assert set(jobs(read(second))) == {"sleepy/tiny/seed1", "boom/tiny/seed0", "boom/tiny/seed1"}
    assert read(second)[-1]["summary"]["reused"] == 1


def test_a_failing_tracker_warns_once_and_the_others_and_the_results_go_on(tmp_path, capsys):
    log = tmp_path / "calls.jsonl"
    out = tmp_path / "run"
    code = main(["run", "--model", "sleepy", "--dataset", "tiny", "--seeds", "3", "--set", "sleepy.sleep=0.01",
                 "--profile", "smoke", "--metric", "nll", "--out", str(out), "--no-progress",
                 "--tracker", "broken", "--tracker", "recording", "--tracker-arg", f"recording.log={log}"])
    captured = capsys.readouterr()
    assert code == 0
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "tracker broken stopped: logging sleepy/tiny/seed0 failed" in warnings[0]
    assert "refused the connection" in warnings[0] and str(out) in warnings[0]
    assert "broken: nothing more logged after logging sleepy/tiny/seed0 failed" in captured.out
    assert len(jobs(read(log))) == 3 and read(log)[-1]["status"] == "finished"
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["seed"]) == [0, 1, 2] and (results["status"] == "ok").all()


def test_trackers_are_called_from_the_coordinator_not_from_workers(tmp_path):
    log = tmp_path / "calls.jsonl"
    assert main(["run", "--model", "sleepy", "--dataset", "tiny", "--set", "sleepy.sleep=0.01", "--profile", "smoke",
                 "--metric", "nll", "--out", str(tmp_path / "run"), "--no-progress", "--executor", "process",
                 "--jobs", "1", "--tracker", "recording", "--tracker-arg", f"log={log}"]) == 0
    events = read(log)
    assert len(jobs(events)) == 1 and {e["pid"] for e in events} == {os.getpid()}


@pytest.mark.parametrize("flags, message", [
    (["--tracker", "recordng"], "unknown tracker 'recordng'; did you mean 'recording'"),
    (["--tracker", "recording", "--tracker-arg", "project=x"], "no chosen tracker takes 'project'"),
    (["--tracker", "recording", "--tracker-arg", "recording.project=x"], "tracker 'recording' takes log"),
    (["--tracker", "recording", "--tracker-arg", "wandb.project=x"], "tracker 'wandb' is not chosen"),
    (["--tracker", "recording", "--tracker-arg", "log"], "expected KEY=VALUE"),
    (["--tracker", "wandb", "--tracker-arg", "mode=sometimes"], "W&B's mode is one of online, offline"),
])
def test_bad_tracker_choices_exit_2_before_anything_runs(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert run(out, *flags) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_extra_exits_2_with_the_install_hint_and_the_plugin_still_loads(tmp_path):
    """mlflow and wandb blocked from importing, as where the extras are not installed."""
    out = tmp_path / "run"
    script = ("import sys; sys.modules['mlflow'] = None; sys.modules['wandb'] = None\n"
              "from harness.host import get_host\n"
              "host = get_host(); assert {'mlflow', 'wandb'} <= set(host.registry.trackers), host.plugins\n"
              "from harness.cli import main\n"
              f"sys.exit(main(['run', '--model', 'gaussian', '--dataset', '8gaussians', '--profile', 'smoke', "
              f"'--out', {str(out)!r}, '--tracker', 'mlflow']))")
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "tracker 'mlflow' needs mlflow, which is not installed: pip install 'harness[mlflow]'" in done.stderr
    assert not out.exists()


def test_the_config_file_chooses_trackers_the_run_records_them_and_flags_win(tmp_path):
    log = tmp_path / "calls.jsonl"
    config = tmp_path / "in.toml"
    config.write_text('[run]\nmodels = ["sleepy"]\ndatasets = ["tiny"]\nprofile = "smoke"\nmetrics = ["nll"]\n'
                      '[set]\n"sleepy.sleep" = 0.01\n'
                      f'[tracking]\ntrackers = ["recording"]\n[tracking.args.recording]\nlog = "{log}"\n')
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    assert logged_jobs(log) == 1
    written = read_config(out / "config.toml")
    assert written.tracking == {"trackers": ["recording"], "args": {"recording.log": str(log)}}
    again = tmp_path / "again"
    assert main(["run", "--config", str(out / "config.toml"), "--out", str(again), "--no-progress"]) == 0
    assert logged_jobs(log) == 2
    assert main(["run", "--config", str(out / "config.toml"), "--out", str(tmp_path / "quiet"), "--no-progress",
                 "--tracker", "none"]) == 0
    assert logged_jobs(log) == 2
    assert "[tracking]" not in (tmp_path / "quiet" / "config.toml").read_text()


@pytest.mark.parametrize("table, message", [
    ('[tracking]\ntracker = ["mlflow"]\n', "[tracking] holds trackers = [names] and args"),
    ('[tracking]\ntrackers = "mlflow"\n', "trackers must be a list of tracker names"),
    ('[tracking]\ntrackers = ["mlflow"]\nargs = "experiment=toys"\n', "args must be a table"),
    ('[tracking]\ntrackers = ["mlflow"]\n[tracking.args]\nexperiment = [1, 2]\n', "a value must be a string"),
])
def test_a_malformed_tracking_table_says_what_is_wrong(tmp_path, table, message):
    from harness.contracts import UserError

    path = tmp_path / "c.toml"
    path.write_text(table)
    with pytest.raises(UserError, match=re.escape(message)):
        read_config(path)


def test_evaluate_and_evaluate_samples_log_the_same_way(tmp_path):
    log = tmp_path / "calls.jsonl"
    flags = ["--profile", "smoke", "--no-progress", "--tracker", "recording", "--tracker-arg", f"log={log}"]
    assert run(tmp_path / "run") == 1
    assert main(["evaluate", str(tmp_path / "run"), "--metric", "nll", "--out", str(tmp_path / "ev"),
                 *flags[2:]]) == 0
    samples = np.random.default_rng(0).normal(1.0, 0.5, size=(600, 2)).astype(np.float32)
    np.save(tmp_path / "s.npy", samples)
    assert main(["evaluate-samples", str(tmp_path / "s.npy"), "--dataset", "8gaussians", "--name", "mine",
                 "--metric", "precision", "--out", str(tmp_path / "es"), *flags]) == 0
    events = read(log)
    assert [(e["event"], e.get("command")) for e in events if e["event"] == "start"] == [
        ("start", "evaluate"), ("start", "evaluate-samples")]
    assert list(jobs(events)) == ["sleepy/tiny/seed0", "mine/8gaussians/seed0"]
    assert jobs(events)["mine/8gaussians/seed0"]["record"]["tags"]["harness.source"] == "samples"
    assert [e["event"] for e in events].count("finish") == 2


def test_keys_keep_the_identity_and_a_likelihood_s_kind():
    assert value_key("fid@2000", "statistic") == "fid@2000"
    assert value_key("nll", "bound") == "nll.bound" and value_key("bpd", "exact") == "bpd.exact"
    assert value_key("fid@2000[steps=10]", "statistic") == "fid@2000[steps=10]"
    v = TrackedValue("nll", "nll", 3.0, 0.1, "nats", "estimate", 100, False)
    assert (v.key, v.stderr_key) == ("nll.estimate", "nll.estimate.stderr")
    # MLflow's alphabet: letters, digits, _ - . / and space (a colon is refused on Windows)
    assert mlflow_key("fid@2000") == "fid_at_2000"
    assert mlflow_key("fid@2000[steps=10].stderr") == "fid_at_2000/steps_10.stderr"
    assert mlflow_key("nll.bound") == "nll.bound"


def test_trackers_are_a_registered_kind_with_owners_and_no_duplicates():
    host = PluginHost()
    host.add_plugin(fake_trackers, "fake-trackers")
    assert set(host.registry.trackers) == {"recording", "broken"}
    assert host.owner("trackers", "recording") == "fake-trackers"

    class Twin:
        from harness import hookimpl

        @hookimpl
        def harness_register_trackers(self, register):
            register(TrackerSpec(name="recording", open=dict))

    host.add_plugin(Twin(), "twin")
    with pytest.raises(PluginError, match="tracker name 'recording' is registered by both") as err:
        host.registry
    assert "'fake-trackers'" in str(err.value) and "'twin'" in str(err.value)


def test_list_shows_each_tracker_with_its_arguments_and_what_to_install(capsys):
    assert main(["list", "trackers", "--format", "json"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert {"mlflow", "wandb", "recording"} <= set(listed)
    assert listed["mlflow"]["install"] == "harness[mlflow]" and listed["mlflow"]["plugin"] == "mlflow_tracker"
    assert {"tracking_uri", "experiment", "run_name"} == set(listed["mlflow"]["options"])
    assert {"project", "entity", "mode", "dir", "run_name"} == set(listed["wandb"]["options"])


def test_an_interrupted_run_closes_its_trackers_run_as_interrupted_with_the_tables_of_finished_jobs(tmp_path):
    import signal
    import time

    log = tmp_path / "calls.jsonl"
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "run", "--model", "sleepy", "--dataset", "tiny", "--seeds", "2",
           "--set", "sleepy.sleep=60", "--profile", "smoke", "--metric", "nll", "--out", str(out), "--no-progress",
           "--tracker", "recording", "--tracker-arg", f"log={log}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    deadline = time.monotonic() + 120
    while not read(log) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    events = read(log)
    assert [e["event"] for e in events] == ["start", "finish"]
    assert events[-1]["status"] == "interrupted" and events[-1]["files"]["csv"][1]
    assert events[-1]["summary"] == {}  # no counts rather than wrong ones
