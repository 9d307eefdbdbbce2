"""The W&B tracker offline (WANDB_MODE=offline, no network): the run folders W&B writes for a later
`wandb sync` hold one run for the harness run and one per job, in one group, with each job's
measurements, hyperparameters and files, read back from W&B's own records (the run-*.wandb file:
W&B's protobuf records in its LevelDB-style log framing) and files folder."""

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

try:
    import wandb  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        pytest.fail("wandb is not installed; CI must install harness[wandb] (see .ci/run)", pytrace=False)
    pytest.skip("wandb is not installed: python -m pip install 'harness[wandb]'", allow_module_level=True)

from wandb.proto import wandb_internal_pb2  # noqa: E402

from harness.config import read_config  # noqa: E402
from harness.contracts import value_key  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BLOCK, HEADER = 32768, 7  # the log's block size and its record header (crc32, length, type)
FULL, LAST = 1, 4


def records(path: Path):
    """The protobuf records of a .wandb file: a 7-byte file header (":W&B", magic, version), then the
    LevelDB log format (records split across 32 KiB blocks as FIRST/MIDDLE/LAST chunks)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_run(folder: Path) -> dict:
    """What one offline run folder holds: its run record, logged values, config, files and exit code."""
    (log,) = folder.glob("run-*.wandb")
    out = {"history": {}, "files": set(), "exit": None}
    for r in records(log):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = r.run
            out["config"] = {i.key: json.loads(i.value_json) for i in r.run.config.update}
        elif kind == "history":
            out["history"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "files":
            out["files"] |= {f.path for f in r.files.files}
        elif kind == "exit":
            out["exit"] = r.exit.exit_code
    out["on_disk"] = {p.name for p in (folder / "files").iterdir()}
    return out


def test_an_offline_run_holds_every_job_with_its_measurements_for_a_later_sync(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "cfg"),
           "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_DATA_DIR": str(tmp_path / "data"),
           "OMP_NUM_THREADS": "1", "HARNESS_PLUGINS": "",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, "-m", "harness", "run", "--model", "gmm", "gaussian", "--dataset", "8gaussians",
           "--metric", "nll", "fid", "--profile", "smoke", "--out", str(out), "--no-progress",
           "--tracker", "wandb", "--tracker-arg", "project=toys"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    runs = [read_run(folder) for folder in sorted((tmp_path / "wandb").glob("offline-run-*"))]
    parents = [r for r in runs if r["run"].job_type == "harness-run"]
    children = {r["run"].display_name: r for r in runs if r["run"].job_type == "harness-job"}
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    group = parent["run"].run_id
    assert f"wandb sync {tmp_path / 'wandb'}/offline-run-*-{group}*" in done.stdout
    assert parent["run"].project == "toys" and parent["exit"] == 0
    assert {"report.html", "results.json", "config.toml"} <= parent["files"] & parent["on_disk"]
    assert parent["history"]["jobs.ok"] == 2
    assert sorted(children) == ["gaussian/8gaussians/seed0", "gmm/8gaussians/seed0"]

    results = pd.read_csv(out / "results.csv").query("status == 'ok'")
    hparams = read_config(out / "config.toml").overrides
    for name, child in children.items():
        model = name.split("/")[0]
        assert child["run"].run_group == group and child["exit"] == 0
        expected = {}
        for r in results[results["model"] == model].itertuples(index=False):
            key = value_key(r.id, r.estimator)
            expected[key] = r.value
            if not math.isnan(r.stderr):
                expected[f"{key}.stderr"] = r.stderr
        logged = {k: v for k, v in child["history"].items() if not k.startswith("_")}
        assert set(logged) == set(expected) and {"nll.exact", "fid@500"} <= set(logged)
        for key, value in expected.items():
            assert logged[key] == pytest.approx(value, rel=1e-12), key
        tags = child["config"].pop("harness")
        assert tags["harness.model"] == model and len(tags["harness.job_key"]) == 32
        # the resolved hyperparameters are the run's config
        assert {k: v for k, v in child["config"].items() if k != "_wandb"} == {
            o.key: o.value for o in hparams if o.target == model}
        assert {"measurements.json", "samples.npy", "density.npz", "meta.json"} <= child["files"] & child["on_disk"]
