"""The MLflow tracker against a real tracking server (`mlflow server`, SQLite backend, a free port,
started and stopped here): a smoke run lands as one parent run and a child per job, every stored
measurement with its value and standard error, the hyperparameters as params, the job's files and the
report as artifacts; a server killed mid-run costs the run nothing but one warning."""

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

try:
    import mlflow
except ImportError:
    if os.environ.get("CI"):
        pytest.fail("mlflow is not installed; CI must install harness[mlflow] (see .ci/run)", pytrace=False)
    pytest.skip("mlflow is not installed: python -m pip install 'harness[mlflow]'", allow_module_level=True)

from mlflow.tracking import MlflowClient  # noqa: E402

from harness.config import read_config  # noqa: E402
from harness.contracts import value_key  # noqa: E402
from harness_plugins.trackers.mlflow import mlflow_key  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PARENT = "mlflow.parentRunId"


class Server:
    """`mlflow server` in its own process group, answering on a free port of 127.0.0.1."""

    def __init__(self, root: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{port}"
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "server.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                 "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        self.stop()
        pytest.fail(f"mlflow server did not answer within 180 s:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One server for the module (starting one takes a while); a test that kills it gets a new one next."""
    started = []

    def live() -> Server:
        if not started or started[-1].proc.poll() is not None:
            started.append(Server(tmp_path_factory.mktemp("mlflow-server")))
        return started[-1]

    yield live
    for s in started:
        s.stop()


@pytest.fixture
def server(servers):
    return servers()


def harness_cli(uri, *args, plugins=""):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "HARNESS_PLUGINS": plugins,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return [sys.executable, "-m", "harness", *args, "--profile", "smoke", "--no-progress", "--tracker", "mlflow"], env


def test_a_run_lands_as_one_parent_and_a_child_per_job_with_every_measurement_and_the_report(server, tmp_path):
    out = tmp_path / "run"
    cmd, env = harness_cli(server.uri, "run", "--model", "gmm", "gaussian", "--dataset", "8gaussians", "--metric",
                           "nll", "fid", "precision", "--out", str(out), "--tracker-arg", "experiment=toys")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("toys")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if PARENT not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert f"{server.uri}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}" in done.stdout
    assert parent.info.run_name == "run" and parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs.ok"] == 2 and parent.data.metrics["jobs.failed"] == 0
    children = {r.info.run_name: r for r in runs if r.data.tags.get(PARENT) == parent.info.run_id}
    assert sorted(children) == ["gaussian/8gaussians/seed0", "gmm/8gaussians/seed0"]
    assert len(runs) == 3

    results = pd.read_csv(out / "results.csv").query("status == 'ok'")
    hparams = read_config(out / "config.toml").overrides
    for name, child in children.items():
        model = name.split("/")[0]
        rows = results[results["model"] == model]
        expected = {}
        for r in rows.itertuples(index=False):
            key = mlflow_key(value_key(r.id, r.estimator))
            expected[key] = r.value
            if not math.isnan(r.stderr):
                expected[f"{key}.stderr"] = r.stderr
        assert set(child.data.metrics) == set(expected)  # every measurement, nothing else
        for key, value in expected.items():
            assert child.data.metrics[key] == pytest.approx(value, rel=1e-12), key
        assert {"nll.exact", "nll.exact.stderr", "fid_at_500", "precision_at_500"} <= set(child.data.metrics)
        assert child.data.params == {o.key: str(o.value) for o in hparams if o.target == model}
        tags = child.data.tags
        assert tags["harness.model"] == model and tags["harness.profile"] == "smoke" and tags["harness.machine"]
        assert tags["harness.version"] and len(tags["harness.job_key"]) == 32 and child.info.status == "FINISHED"
        files = {f.path for f in client.list_artifacts(child.info.run_id)}
        assert files == {"measurements.json", "samples.npy", "density.npz", "meta.json"}

    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "results.json", "config.toml", "results.csv", "report.md"} == files
    copy = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="report.html",
                                               dst_path=str(tmp_path / "dl"), tracking_uri=server.uri)
    assert Path(copy).read_bytes() == (out / "report.html").read_bytes()


def test_a_server_killed_mid_run_costs_one_warning_and_no_result(server, tmp_path):
    out = tmp_path / "run"
    gate = tmp_path / "gate"
    cmd, env = harness_cli(server.uri, "run", "--model", "stdnormal", "gated", "--dataset", "tiny", "--metric", "nll",
                           "--out", str(out), plugins="tests.fake_plugins.fakes,tests.fake_plugins.gated")
    env["HARNESS_TEST_GATE"] = str(gate)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = MlflowClient(server.uri)
        deadline = time.monotonic() + 300
        logged = []
        while not logged and time.monotonic() < deadline and proc.poll() is None:
            experiment = client.get_experiment_by_name("harness")
            if experiment is not None:
                logged = [r for r in client.search_runs([experiment.experiment_id])
                          if r.info.run_name == "stdnormal/tiny/seed0" and r.info.status == "FINISHED"]
            time.sleep(0.2)
        assert logged, "the first job should be logged while the second waits"
        server.stop(signal.SIGKILL)  # the whole server, mid-run
        gate.touch()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, stderr
    assert warnings[0].startswith("warning: tracker mlflow stopped: logging gated/tiny/seed0 failed")
    assert "Connection refused" in warnings[0] and f"every result stays in {out}" in warnings[0]
    assert "mlflow: nothing more logged after logging gated/tiny/seed0 failed" in stdout
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["model"]) == ["gated", "stdnormal"] and (results["status"] == "ok").all()
