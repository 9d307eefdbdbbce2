"""Speed rows judged by the machine that measured them (harness/comparison/measured.py, machines.py):
a run whose jobs ran on two cluster nodes of different speed, against a baseline from the fast one.

A results directory is placed on nodes by rewriting its store as the ray executor would have written it
(:func:`on_nodes`): each job's details name its node and that node's machine (fingerprint and
calibration), and a job on the slow node measured every rate at half the speed. The slow node's
calibration is the fast one's with every time doubled: slower by 2x by construction. The figures are the
regression fakes' deterministic ``fake_rate`` (a planted rate with 5% seed noise), so the verdicts do not
depend on this machine's load.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from harness import machine
from harness.comparison import load_results, results_machine, row_machines
from harness.jobs import JobStatus
from tests.test_machine_rule import EXACT_METRICS, compare_json, exponents, pair_json
from tests.test_machine_rule import run_suite as _run_suite


def run_suite(*args, **kwargs):
    """Every run here measures speed in every seed's job (run --speed-per-seed): rows whose seeds ran on
    different nodes."""
    return _run_suite(*args, speed_per_seed=True, **kwargs)


SLOW = 0.5  # the slow node's speed, as a fraction of the fast one's


def nodes_of(results) -> dict:
    """The fast and the slow node's records, made from the machine the run recorded."""
    db = sqlite3.connect(results / "results.sqlite")
    (info,) = [json.loads(text) for (text,) in db.execute("SELECT info FROM runs")]
    db.close()
    recorded = info["machine"]
    nodes = {}
    for name, speed in (("fast", 1.0), ("slow", SLOW)):
        fp = dict(recorded["fingerprint"], processor=f"{name} CPU", device_name=f"{name} CPU", executor="ray")
        calibration = json.loads(json.dumps(recorded["calibration"]))
        for w in calibration["workloads"].values():
            w["seconds"] /= speed
        nodes[name] = {"id": f"node-{name}", "host": f"{name}-host", "fingerprint": fp, "calibration": calibration,
                       "machine": machine.machine_id(fp), "speed": speed}
    return nodes


def on_nodes(src, dst, nodes, placement):
    """Copy a results directory as if each model's jobs had run on the node ``placement`` names (model ->
    "fast" or "slow"): the jobs' details say so, and the rates of a job on a node of speed s are x s."""
    shutil.copytree(src, dst)
    moves = exponents(src)
    db = sqlite3.connect(dst / "results.sqlite")
    for key, model, text in db.execute("SELECT key, model, details FROM jobs").fetchall():
        node = nodes[placement[model]]
        details = dict(json.loads(text or "{}"), machine=node["machine"],
                       node={k: node[k] for k in ("id", "host", "fingerprint", "calibration")})
        db.execute("UPDATE jobs SET details = ? WHERE key = ?", (json.dumps(details), key))
        for name, d in moves.items():
            k = node["speed"] ** d
            db.execute("UPDATE measurements SET value = value * ?, stderr = stderr * ? WHERE key = ? AND metric = ?",
                       (k, k, key, name))
    db.commit()
    db.close()
    return dst


@pytest.fixture(scope="module")
def fast_baseline(tmp_path_factory):
    """Both fake models, every job on the fast node, and the baseline saved from them."""
    from harness.cli import main

    root = tmp_path_factory.mktemp("nodes")
    run = run_suite(root / "run", EXACT_METRICS)
    nodes = nodes_of(run)
    results = on_nodes(run, root / "fast", nodes, {"fake-gaussian": "fast", "fake-twin": "fast"})
    path = root / "fast.json"
    assert main(["baseline", "save", str(results), "--to", str(path)]) == 0
    return results, path, nodes


def rate_rows(report):
    return {r["model"]: r for r in report["rows"] if r["metric"] == "fake_rate"}


def test_a_row_measured_on_a_2x_slower_node_compares_unchanged_against_the_fast_nodes_baseline(
        fast_baseline, tmp_path, capsys, monkeypatch):
    results, path, nodes = fast_baseline
    (section,) = json.loads(path.read_text())["machines"]
    assert section == nodes["fast"]["machine"]  # the baseline's figures are the fast node's
    mixed = on_nodes(run_suite(tmp_path / "run", EXACT_METRICS), tmp_path / "mixed", nodes,
                     {"fake-gaussian": "fast", "fake-twin": "slow"})
    loaded = load_results(mixed)
    assert results_machine(loaded).ids == sorted([nodes["fast"]["machine"], nodes["slow"]["machine"]])
    slow = row_machines(loaded)[("fake-twin", "reg-blobs", "fake_rate")]
    assert slow.id == nodes["slow"]["machine"] and slow.calibration == nodes["slow"]["calibration"]

    code, report = compare_json(capsys, monkeypatch, mixed, path)
    assert code == 0 and report["passed"] and report["speed"]["mode"] == "per-machine"
    by_machine = {m["machine"]: m for m in report["speed"]["machines"]}
    assert by_machine[nodes["fast"]["machine"]]["mode"] == "same-machine"
    assert by_machine[nodes["slow"]["machine"]]["mode"] == "normalised"
    assert by_machine[nodes["slow"]["machine"]]["factor"] == pytest.approx(SLOW, rel=1e-9)
    assert by_machine[nodes["fast"]["machine"]]["jobs"] == by_machine[nodes["slow"]["machine"]]["jobs"] == 3
    rows = rate_rows(report)
    # Measured at half the speed, normalised by the slow node's own calibration: the baseline's figure.
    twin = rows["fake-twin"]
    assert twin["current"]["mean"] / twin["baseline"]["mean"] == pytest.approx(SLOW, rel=1e-9)
    assert twin["normalised"]["mean"] == pytest.approx(twin["baseline"]["mean"], rel=1e-9)
    assert twin["verdict"] == "unchanged" and "normalised by the machine speed factor x0.5" in twin["note"]
    gaussian = rows["fake-gaussian"]  # measured on the fast node: as measured
    assert gaussian["verdict"] == "unchanged" and "normalised" not in gaussian
    assert gaussian["ratio"] == pytest.approx(1)
    assert {r["verdict"] for r in report["rows"]} == {"unchanged"}
    assert "measured on 2 machines" in report["speed"]["summary"]

    # One calibration for the whole run (the median of the two nodes' times: 1.5 times the fast node's)
    # would have been wrong for both: the fast node's figures read 1.5 times too fast, the slow one's 0.75.
    pooled = machine.speed_factor(nodes["fast"]["calibration"], results_machine(loaded).calibration).factor
    assert pooled == pytest.approx(1 / 1.5, rel=1e-9)


def test_a_3x_slowdown_of_one_model_on_the_slow_node_is_still_caught(fast_baseline, tmp_path, capsys, monkeypatch):
    results, path, nodes = fast_baseline
    slower = on_nodes(run_suite(tmp_path / "run", EXACT_METRICS, twin_rate=1000.0 / 3), tmp_path / "mixed", nodes,
                      {"fake-gaussian": "fast", "fake-twin": "slow"})
    code, report = compare_json(capsys, monkeypatch, slower, path)
    assert code == 1 and report["speed"]["mode"] == "per-machine"
    failing = [r for r in report["rows"] if r["verdict"] in ("failed", "worse", "changed", "missing")]
    assert [(r["model"], r["metric"], r["verdict"]) for r in failing] == [("fake-twin", "fake_rate", "worse")]
    twin = failing[0]
    assert twin["current"]["mean"] / twin["baseline"]["mean"] == pytest.approx(SLOW / 3, rel=1e-9)  # raw: x1/6
    assert twin["ratio"] == pytest.approx(1 / 3, rel=1e-9)  # normalised: the real 3x slowdown
    assert rate_rows(report)["fake-gaussian"]["verdict"] == "unchanged"


def test_report_of_two_runs_judges_each_cell_by_the_machines_that_measured_it(fast_baseline, tmp_path, capsys,
                                                                             monkeypatch):
    results, _, nodes = fast_baseline
    placement = {"fake-gaussian": "fast", "fake-twin": "slow"}
    same = on_nodes(run_suite(tmp_path / "same", EXACT_METRICS), tmp_path / "b", nodes, placement)
    doc = pair_json(capsys, monkeypatch, results, same)
    assert doc["speed"]["mode"] == "per-machine" and {r["verdict"] for r in doc["rows"]} == {"unchanged"}
    twin = rate_rows(doc)["fake-twin"]
    assert twin["normalised"]["mean"] == pytest.approx(twin["a"]["mean"], rel=1e-9)
    slower = on_nodes(run_suite(tmp_path / "slower", EXACT_METRICS, twin_rate=1000.0 / 3), tmp_path / "c", nodes,
                      placement)
    cells = rate_rows(pair_json(capsys, monkeypatch, results, slower))
    assert cells["fake-twin"]["verdict"] == "worse" and cells["fake-gaussian"]["verdict"] == "unchanged"


def test_a_row_whose_seeds_ran_on_two_kinds_of_node_has_a_machine_of_its_own(fast_baseline, tmp_path):
    results, _, nodes = fast_baseline
    split = tmp_path / "split"
    shutil.copytree(results, split)
    db = sqlite3.connect(split / "results.sqlite")
    key, text = db.execute("SELECT key, details FROM jobs WHERE model = 'fake-twin' AND seed = 2").fetchone()
    node = nodes["slow"]
    details = dict(json.loads(text), machine=node["machine"],
                   node={k: node[k] for k in ("id", "host", "fingerprint", "calibration")})
    db.execute("UPDATE jobs SET details = ? WHERE key = ?", (json.dumps(details), key))
    db.commit()
    db.close()
    rows = row_machines(load_results(split))
    mixed = rows[("fake-twin", "reg-blobs", "fake_rate")]
    assert mixed.ids == sorted([nodes["fast"]["machine"], node["machine"]]) and mixed.id == "+".join(mixed.ids)
    # One calibration per seed (fast, fast, slow): their median is the fast node's.
    assert mixed.calibration["workloads"] == {n: {"seconds": w["seconds"]}
                                              for n, w in nodes["fast"]["calibration"]["workloads"].items()}
    assert rows[("fake-gaussian", "reg-blobs", "fake_rate")].id == nodes["fast"]["machine"]


def test_a_job_whose_node_was_lost_has_no_machine(fast_baseline, tmp_path):
    """A job failed with its node (details ``machine`` None, no measurement) adds no machine; its row is
    the other seeds'."""
    results, _, nodes = fast_baseline
    lost = tmp_path / "lost"
    shutil.copytree(results, lost)
    db = sqlite3.connect(lost / "results.sqlite")
    (key,) = db.execute("SELECT key FROM jobs WHERE model = 'fake-twin' AND seed = 0").fetchone()
    db.execute("UPDATE jobs SET details = ?, status = ?, reason = ? WHERE key = ?",
               (json.dumps({"machine": None}), JobStatus.FAILED.value, "Ray worker died: NodeDiedError", key))
    db.execute("DELETE FROM measurements WHERE key = ?", (key,))
    db.commit()
    db.close()
    loaded = load_results(lost)
    assert results_machine(loaded).ids == [nodes["fast"]["machine"]]
    assert row_machines(loaded)[("fake-twin", "reg-blobs", "fake_rate")].id == nodes["fast"]["machine"]
