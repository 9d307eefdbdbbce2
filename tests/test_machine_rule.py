"""The machine rule of the regression gate (harness/machine.py, harness/comparison/machines.py,
harness/regression/speed.py) and the rows of plugins that are not installed.

A results directory is moved to "another machine" by rewriting its store as that machine would have
written it (:func:`as_another_machine`): another processor in the fingerprint (so another machine
id), every figure its output declares a rate multiplied and every one declared a duration divided by a
speed factor, and, or not, the
calibration's times divided by the same factor. The same measured numbers, scaled, so the verdicts
do not depend on this machine's load. The numbers the gate prints are checked against the factors
applied and scipy's geometric mean.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sqlite3

import numpy as np
import pytest
from scipy import stats

import harness.runner

from harness import Scaling, machine, regression
from harness.cli import main
from harness.comparison import Entry, MachineSide, SpeedMode, SpeedPlan
from harness.host import PluginHost
from harness.machine import SpeedFactor
from harness.profiles import get_profile
from harness.report import write_reports
from harness.runner import Runner
from tests.fake_plugins.regression_fakes import RegressionFakes, TwinFakes

MODELS = ["fake-gaussian", "fake-twin"]
# Deterministic metrics only (fake_rate is a seeded stand-in for a throughput), for verdicts that must
# not depend on timing; the real speed metrics where the same numbers are compared, scaled.
EXACT_METRICS = ["nll", "fake_score", "fake_rate", "fake_loss"]
TIMED_METRICS = EXACT_METRICS + ["sample_throughput", "sample_latency", "peak_memory"]


# How a figure moves with the machine's speed, by its output's declared scaling (rates with it, durations
# against it); the figures of other outputs do not move.
EXPONENT = {"rate": 1, "duration": -1}


def exponents(results) -> dict:
    """Measurement name -> +1 (rate), -1 (duration) or 0, from the declarations a results store holds."""
    db = sqlite3.connect(results / "results.sqlite")
    decls = {name: json.loads(decl) for name, decl in db.execute("SELECT name, declaration FROM outputs")}
    db.close()
    return {name: EXPONENT.get(decl.get("scaling"), 0) for name, decl in decls.items()}


def make_host(twin=True, twin_rate=1000.0) -> PluginHost:
    """The built-in likelihood and speed metrics, the regression fakes and (if ``twin``) the twin plugin."""
    host = PluginHost()
    names = {ep.name for ep in importlib.metadata.entry_points(group="harness")}
    host.load_entry_points(strict=False, blocked=names - {"likelihood_metrics", "speed_metrics"})
    host.add_plugin(RegressionFakes(), "regression_fakes")
    if twin:
        host.add_plugin(TwinFakes(rate=twin_rate), "twin_fakes")
    return host


def run_suite(out, metrics, models=MODELS, seeds=(0, 1, 2), speed_per_seed=False, **host_args):
    runner = Runner(make_host(**host_args), get_profile("smoke"), out, seeds=list(seeds), metrics=metrics,
                    speed_per_seed=speed_per_seed)
    store, _ = runner.run(runner.plan(models, None, False))
    write_reports(store.results(), out, outputs=store.outputs())
    store.close()
    return out


def as_another_machine(src, dst, speed=1.0, calibration_speed=None, processor="Simulated CPU", calibration=None):
    """Copy a results directory as if another machine had made it: rates x speed, durations / speed,
    the calibration's times / calibration_speed (None: unchanged) or replaced by ``calibration``,
    fingerprint processor replaced (``processor=None`` keeps the machine as it was)."""
    shutil.copytree(src, dst)
    db = sqlite3.connect(dst / "results.sqlite")
    for name, d in exponents(src).items():
        if d:
            k = speed ** d
            db.execute("UPDATE measurements SET value = value * ?, stderr = stderr * ? WHERE metric = ?", (k, k, name))
    for run_id, text in db.execute("SELECT run_id, info FROM runs").fetchall():
        info = json.loads(text)
        m = info["machine"]
        if processor is not None:
            m["fingerprint"]["processor"] = m["fingerprint"]["device_name"] = processor
            m["id"] = machine.machine_id(m["fingerprint"])
        if calibration is not None:
            m["calibration"] = calibration
        if calibration_speed is not None:
            for w in m["calibration"]["workloads"].values():
                w["seconds"] /= calibration_speed
        db.execute("UPDATE runs SET info = ? WHERE run_id = ?", (json.dumps(info), run_id))
    db.commit()
    db.close()
    return dst


def cli(capsys, monkeypatch, *argv, twin=True):
    """The CLI in-process with a host that has the fakes (and the twin plugin if ``twin``)."""
    monkeypatch.setattr("harness.host.get_host", lambda: make_host(twin=twin))
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def compare_json(capsys, monkeypatch, results, baseline, *extra, twin=True):
    code, out, _ = cli(capsys, monkeypatch, "compare", results, "--baseline", baseline, "--format", "json", *extra,
                       twin=twin)
    return code, json.loads(out)


def speed_rows(report):
    return [r for r in report["rows"] if r["kind"] == "speed"]


@pytest.fixture(scope="module")
def timed(tmp_path_factory):
    """Both fake models with the real speed metrics, seeds 0..2, and their baseline."""
    root = tmp_path_factory.mktemp("timed")
    with pytest.MonkeyPatch.context() as patch:  # a calibration round between every two jobs, however short
        patch.setattr(harness.runner, "CALIBRATION_INTERVAL_S", 0.0)
        results = run_suite(root / "results", TIMED_METRICS)
    path = root / "smoke.json"
    assert main(["baseline", "save", str(results), "--to", str(path)]) == 0
    return results, path


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    """Both fake models with the deterministic metrics only, and their baseline."""
    root = tmp_path_factory.mktemp("exact")
    results = run_suite(root / "results", EXACT_METRICS)
    path = root / "smoke.json"
    assert main(["baseline", "save", str(results), "--to", str(path)]) == 0
    return results, path


# ----------------------------------------------------------------------------- the machine's record

def test_fingerprint_names_the_machine_by_what_sets_its_speed():
    fp = machine.fingerprint("cpu")
    assert fp["logical_cpus"] >= 1 and fp["torch_threads"] >= 1 and fp["device"] == "cpu" and fp["torch"]
    same = machine.machine_id(dict(fp, platform="another kernel build"))  # informative only
    assert same == machine.machine_id(fp) and len(same) == 12
    for field, other in (("torch_threads", fp["torch_threads"] + 1), ("processor", "another CPU"),
                         ("blas", "openblas"), ("torch", "0.0.1")):
        assert machine.machine_id(dict(fp, **{field: other})) != same


def test_calibration_times_every_workload_with_repeats():
    cal = machine.Calibration("cpu").full(seconds=0.02).result()
    assert cal["version"] == machine.CALIBRATION_VERSION and cal["rounds"] >= 3
    assert set(cal["workloads"]) == {w.name for w in machine.WORKLOADS} == {"matmul", "conv2d", "small_ops"}
    for w in cal["workloads"].values():
        assert w["block"] >= 1 and 0 < w["min"] <= w["seconds"] <= w["max"] and w["samples"] == 1


def test_a_calibration_over_a_run_is_the_median_of_its_samples():
    """Full calibrations add their median, rounds between jobs one figure each: the result is the
    median over those samples (statistics.median of what was recorded), not of every round."""
    cal = machine.Calibration("cpu").full(seconds=0.02)
    for _ in range(4):
        cal.between_jobs()
    cal.full(seconds=0.02)
    result = cal.result()
    assert result["full"] == 2 and result["between_jobs"] == 4 and result["rounds"] >= 2 * 3 + 4
    for name, w in result["workloads"].items():
        assert w["samples"] == 6 and len(cal.samples[name]) == 6
        assert w["seconds"] == pytest.approx(float(np.median(cal.samples[name])), rel=1e-12)
        assert min(cal.per_call[name]) == w["min"] <= w["seconds"] <= w["max"] == max(cal.per_call[name])


def test_speed_factor_is_the_geometric_mean_of_the_workload_ratios():
    ref = {"version": 1, "workloads": {"matmul": {"seconds": 0.004}, "conv2d": {"seconds": 0.002},
                                       "small_ops": {"seconds": 2e-4}, "only_here": {"seconds": 1.0}}}
    cur = {"version": 1, "workloads": {"matmul": {"seconds": 0.010}, "conv2d": {"seconds": 0.003},
                                       "small_ops": {"seconds": 5e-4}}}
    f = machine.speed_factor(ref, cur)
    assert f.ratios == pytest.approx({"matmul": 0.4, "conv2d": 2 / 3, "small_ops": 0.4}, rel=1e-12)
    assert f.factor == pytest.approx(stats.gmean([0.4, 2 / 3, 0.4]), rel=1e-12)
    assert machine.speed_factor(ref, dict(cur, version=2)) is None and machine.speed_factor(ref, None) is None
    pooled = machine.pooled([cur, {"version": 1, "workloads": {"matmul": {"seconds": 0.02}}},
                             {"version": 1, "workloads": {"matmul": {"seconds": 0.03}}}])
    assert pooled["workloads"] == {"matmul": {"seconds": 0.02}}  # the median, over workloads all runs timed


@pytest.mark.parametrize("scaling, expected", [(Scaling.RATE, 100.0 / 0.4), (Scaling.DURATION, 100.0 * 0.4),
                                               (Scaling.NONE, 100.0), (None, 100.0)])
def test_across_machines_a_figure_moves_as_its_output_declares_it_scales(scaling, expected):
    """A machine 0.4 times as fast: a rate reads 1/0.4 times higher on the reference machine, a duration
    0.4 times as long; a figure declared not to depend on speed stays; an undeclared one is not compared."""
    plan = SpeedPlan(SpeedMode.NORMALISED, MachineSide("cur"), reference_id="ref", reference=MachineSide("ref"),
                     factor=SpeedFactor(0.4, {"matmul": 0.4}))
    entry = Entry("m", "d", "x", "x", "f", "", "measured", True, 100.0, 5.0, 3, [0, 1, 2])
    normalised = plan.normalise(entry, scaling)
    assert normalised.mean == pytest.approx(expected, rel=1e-12)
    assert normalised.stderr == pytest.approx(5.0 * expected / 100.0, rel=1e-12)
    assert plan.comparable(scaling) == (scaling is not None)
    assert "does not declare how it scales" in plan.row_note(None)
    same = SpeedPlan(SpeedMode.SAME_MACHINE, MachineSide("cur"), reference_id="cur")
    assert same.comparable(None) and same.normalise(entry, Scaling.RATE) is entry


def test_every_run_records_its_machine_and_calibration(timed):
    results, _ = timed
    loaded = regression.load_results(results)
    (info,) = loaded.machines.values()
    assert info["id"] == machine.machine_id(info["fingerprint"])
    cal = info["calibration"]
    assert set(cal["workloads"]) == {"matmul", "conv2d", "small_ops"}
    # Calibrated before and after the jobs, and once between every two of them (they ran in-process; the
    # fixture sets no minimum interval between rounds).
    jobs = loaded.rows["key"].nunique()
    assert jobs > 1 and cal["full"] == 2 and cal["between_jobs"] == jobs - 1
    for w in cal["workloads"].values():
        assert w["samples"] == jobs + 1 and w["min"] <= w["seconds"] <= w["max"]
    assert loaded.owners["models"] == {"fake-gaussian": "regression_fakes", "fake-twin": "twin_fakes"}
    assert loaded.owners["outputs"]["sample_throughput"] == "speed_metrics"


# ----------------------------------------------------------------------------- the machine rule

def test_same_machine_compares_speed_as_measured(timed, capsys, monkeypatch):
    results, path = timed
    code, report = compare_json(capsys, monkeypatch, results, path)
    assert code == 0 and report["speed"]["mode"] == "same-machine" and report["speed"]["same_machine"]
    assert report["speed"]["baseline_from_this_machine"] is True
    rows = speed_rows(report)
    assert rows and {r["verdict"] for r in rows} == {"unchanged"}
    assert all("normalised" not in r and r["ratio"] == pytest.approx(1.0) for r in rows)
    code, out, _ = cli(capsys, monkeypatch, "compare", results, "--baseline", path)
    assert "come from this machine" in out


def test_a_slower_machine_with_a_slower_calibration_compares_clean(timed, tmp_path, capsys, monkeypatch):
    results, path = timed
    slower = as_another_machine(results, tmp_path / "slower", speed=0.4, calibration_speed=0.4)
    code, report = compare_json(capsys, monkeypatch, slower, path)
    assert code == 0 and report["passed"]
    speed = report["speed"]
    assert speed["mode"] == "normalised" and not speed["same_machine"] and speed["baseline_from_this_machine"] is False
    assert speed["results_machine"] != speed["baseline_machine"]
    assert speed["factor"] == pytest.approx(0.4, rel=1e-9)
    assert speed["factor_by_workload"] == pytest.approx({"matmul": 0.4, "conv2d": 0.4, "small_ops": 0.4}, rel=1e-9)
    rows = speed_rows(report)
    moves = exponents(results)
    assert {moves[r["metric"]] for r in rows} == {1, -1, 0}  # rates, durations and a count
    for r in rows:
        assert r["verdict"] == "unchanged", r
        if moves[r["metric"]]:
            # Raw: 0.4x the throughput, 2.5x the latency; normalised: the baseline's figure again.
            raw = r["current"]["mean"] / r["baseline"]["mean"]
            assert raw == pytest.approx(0.4 ** moves[r["metric"]], rel=1e-9)
            assert r["normalised"]["mean"] == pytest.approx(r["baseline"]["mean"], rel=1e-9)
            assert r["tolerance"]["ratio"] and 2.0 < 1 / (1 - r["tolerance"]["relative"]) < 3.0
        else:
            assert "normalised" not in r and "compared as measured" in r["note"]
    assert {r["verdict"] for r in report["rows"] if r["kind"] == "quality"} == {"unchanged"}
    code, out, _ = cli(capsys, monkeypatch, "compare", slower, "--baseline", path)
    assert code == 0 and "come from another machine" in out and "x0.4" in out


def test_slower_figures_without_a_slower_calibration_fail_on_the_speed_rows(timed, tmp_path, capsys, monkeypatch):
    """The same 0.4x figures, but the calibration says the machine is as fast as the baseline's: on the
    same machine (compared as measured) and on another one (normalised by x1), the speed rows fail."""
    results, path = timed
    for processor in (None, "Simulated CPU"):
        slower = as_another_machine(results, tmp_path / f"slow-{processor}", speed=0.4, processor=processor)
        code, report = compare_json(capsys, monkeypatch, slower, path)
        assert code == 1
        assert report["speed"]["mode"] == ("same-machine" if processor is None else "normalised")
        assert report["speed"]["factor"] == pytest.approx(1.0, rel=1e-9)
        failing = [r for r in report["rows"] if r["verdict"] in regression.FAILING]
        assert failing and all(r["kind"] == "speed" and r["verdict"] == "worse" for r in failing)
        # The deterministic stand-in (5% seed noise) fails for both models; every timed row moved 2.5x the
        # wrong way, past its floor (whether the seeds' spread of a real timing also makes it significant
        # depends on this machine's load while the fixture ran).
        assert {r["model"] for r in failing if r["metric"] == "fake_rate"} == set(MODELS)
        moves = exponents(results)
        for r in speed_rows(report):
            if moves[r["metric"]]:
                assert r["ratio"] == pytest.approx(0.4 ** moves[r["metric"]], rel=1e-9)
                assert 1 / (1 - r["tolerance"]["relative"]) < 2.5


def test_a_3x_slowdown_of_one_model_beside_an_unchanged_calibration_fails_that_model_only(
        exact, tmp_path, capsys, monkeypatch):
    _, path = exact
    (section,) = json.loads(path.read_text())["machines"].values()
    run = run_suite(tmp_path / "run", EXACT_METRICS, twin_rate=1000.0 / 3)
    # Another machine id, with the calibration the baseline's machine measured.
    moved = as_another_machine(run, tmp_path / "moved", calibration=section["calibration"])
    code, report = compare_json(capsys, monkeypatch, moved, path)
    assert code == 1 and report["speed"]["mode"] == "normalised"
    failing = [r for r in report["rows"] if r["verdict"] in regression.FAILING]
    assert [(r["model"], r["metric"], r["verdict"]) for r in failing] == [("fake-twin", "fake_rate", "worse")]
    assert failing[0]["ratio"] == pytest.approx(1 / 3, rel=1e-9)
    gaussian = next(r for r in report["rows"] if r["model"] == "fake-gaussian" and r["metric"] == "fake_rate")
    assert gaussian["verdict"] == "unchanged" and gaussian["ratio"] == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("twin_speed, verdict", [(0.3 / 2.2, "unchanged"), (0.1, "worse"), (2.5, "better")])
def test_a_row_compared_across_machines_is_judged_by_every_workloads_factor(
        exact, tmp_path, capsys, monkeypatch, twin_speed, verdict):
    """The calibrations disagree (as AVX2 kernels against AVX512 do): the matrix product and the
    convolution as fast as on the baseline's machine, the small operations 0.3 times as fast (machine
    speed factor 0.3^(1/3) = 0.669). Which workload a model's work resembles is not known, so a row is
    worse only if worse under every factor (the kindest: 0.3) and better only if better under every one
    (the harshest: 1). The twin's raw rate moved by ``twin_speed``; the other model's did not."""
    _, path = exact
    (section,) = json.loads(path.read_text())["machines"].values()
    calibration = json.loads(json.dumps(section["calibration"]))
    calibration["workloads"]["small_ops"]["seconds"] /= 0.3
    run = run_suite(tmp_path / "run", EXACT_METRICS, twin_rate=1000.0 * twin_speed)
    moved = as_another_machine(run, tmp_path / "moved", calibration=calibration)
    code, report = compare_json(capsys, monkeypatch, moved, path)
    assert report["speed"]["mode"] == "normalised"
    assert report["speed"]["factor"] == pytest.approx(stats.gmean([1.0, 1.0, 0.3]), rel=1e-9)
    rows = {r["model"]: r for r in report["rows"] if r["metric"] == "fake_rate"}
    twin, gaussian = rows["fake-twin"], rows["fake-gaussian"]
    assert twin["verdict"] == verdict and code == (1 if verdict == "worse" else 0)
    # Its figures are read under the machine speed factor: at 0.3/2.2 that alone would have failed it
    # (x4.9 the wrong way against a floor of x2.4).
    assert twin["normalised"]["mean"] / twin["baseline"]["mean"] == pytest.approx(
        twin_speed / stats.gmean([1.0, 1.0, 0.3]), rel=1e-9)
    assert "judged by each workload's, x0.3 to x1" in twin["note"]
    # Unchanged raw: 3.3 times better under the small operations' factor, not under the others'.
    assert gaussian["verdict"] == "unchanged"
    code, out, _ = cli(capsys, monkeypatch, "compare", moved, "--baseline", path)
    assert "under every workload's factor" in out


def test_quality_only_leaves_speed_rows_unjudged(timed, tmp_path, capsys, monkeypatch):
    results, path = timed
    slower = as_another_machine(results, tmp_path / "slow", speed=0.4, processor=None)
    code, report = compare_json(capsys, monkeypatch, slower, path, "--quality-only")
    assert code == 0 and report["speed"]["mode"] == "not-compared"
    assert report["speed"]["baseline_from_this_machine"] is True and not report["speed"]["same_machine"]
    assert "The baseline has speed figures from this machine" in report["speed"]["summary"]
    assert {r["verdict"] for r in speed_rows(report)} == {"not-compared"}
    assert report["counts"]["not-compared"] == len(speed_rows(report)) > 0
    code, out, _ = cli(capsys, monkeypatch, "compare", slower, "--baseline", path, "--quality-only")
    assert code == 0 and "--quality-only" in out and "| not-compared" not in out


def test_results_that_record_no_machine_never_fail_on_speed(timed, tmp_path, capsys, monkeypatch):
    results, path = timed
    csv = tmp_path / "csv" / "results.csv"
    csv.parent.mkdir()
    shutil.copy(results / "results.csv", csv)
    code, report = compare_json(capsys, monkeypatch, csv, path)
    assert code == 0 and report["speed"]["mode"] == "not-compared" and "record no machine" in report["speed"]["summary"]
    assert report["speed"]["baseline_from_this_machine"] is None


def test_a_format_1_baseline_is_read_and_its_speed_rows_never_judged(timed, tmp_path, capsys, monkeypatch):
    """A baseline of format 1 kept speed rows beside quality ones and recorded no machine."""
    results, path = timed
    doc = json.loads(path.read_text())
    (section,) = doc.pop("machines").values()
    old = dict(doc, format="harness-baseline/1", entries=doc["entries"] + section["entries"])
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old))
    slower = as_another_machine(results, tmp_path / "slow", speed=0.4, processor=None)
    code, report = compare_json(capsys, monkeypatch, slower, old_path)
    assert code == 0 and report["speed"]["mode"] == "not-compared"
    assert "none has a calibration" in report["speed"]["summary"]
    assert {r["verdict"] for r in report["rows"] if r["kind"] == "quality"} == {"unchanged"}


def test_a_cross_machine_floor_below_one_is_a_usage_error(timed, capsys, monkeypatch):
    results, path = timed
    code, _, err = cli(capsys, monkeypatch, "compare", results, "--baseline", path, "--machine-spread", "0.5")
    assert code == 2 and "machine spread" in err


# ----------------------------------------------------------------------------- several machines in one baseline

def test_merge_adds_this_machines_speed_section_and_keeps_the_quality_rows(timed, tmp_path, capsys, monkeypatch):
    results, path = timed
    merged = tmp_path / "merged.json"
    shutil.copy(path, merged)
    before = json.loads(path.read_text())
    slower = as_another_machine(results, tmp_path / "slower", speed=0.4, calibration_speed=0.4)
    code, out, _ = cli(capsys, monkeypatch, "baseline", "save", slower, "--to", merged, "--merge")
    assert code == 0 and "added the speed section of machine" in out
    after = json.loads(merged.read_text())
    assert after["entries"] == before["entries"] and after["created"] == before["created"]
    (original,) = before["machines"]
    assert len(after["machines"]) == 2 and after["machines"][original] == before["machines"][original]
    (new,) = set(after["machines"]) - {original}
    assert new == regression.results_machine(regression.load_results(slower)).id
    section = after["machines"][new]
    assert "Simulated CPU" in section["description"] and section["calibration"]["workloads"]
    # Each machine is now compared with its own figures, as measured.
    for directory, machine_id in ((slower, new), (results, original)):
        code, report = compare_json(capsys, monkeypatch, directory, merged)
        assert code == 0 and report["speed"]["mode"] == "same-machine"
        assert report["speed"]["baseline_machine"] == machine_id
    # Merging the same machine again replaces its section; the file holds two machines still.
    code, out, _ = cli(capsys, monkeypatch, "baseline", "save", slower, "--to", merged, "--merge")
    assert code == 0 and "replaced the speed section" in out and len(json.loads(merged.read_text())["machines"]) == 2
    code, out, _ = cli(capsys, monkeypatch, "baseline", "show", merged)
    assert code == 0 and out.count("## speed on machine") == 2


def test_merge_needs_an_existing_matching_baseline(timed, tmp_path, capsys, monkeypatch):
    results, path = timed
    code, _, err = cli(capsys, monkeypatch, "baseline", "save", results, "--to", tmp_path / "none.json", "--merge")
    assert code == 2 and "--merge" in err and not (tmp_path / "none.json").exists()
    other = tmp_path / "other.json"
    doc = json.loads(path.read_text())
    doc["profile"] = "quick"
    other.write_text(json.dumps(doc))
    code, _, err = cli(capsys, monkeypatch, "baseline", "save", results, "--to", other, "--merge")
    assert code == 2 and "does not match" in err and json.loads(other.read_text()) == doc


# ----------------------------------------------------------------------------- plugins that are not installed

def test_rows_of_a_plugin_that_is_not_installed_are_reported_apart(exact, tmp_path, capsys, monkeypatch):
    """Without the twin plugin, its model could not run: its rows are listed as not installed and do not
    fail the gate, unless --require-all-plugins."""
    _, path = exact
    alone = run_suite(tmp_path / "alone", EXACT_METRICS, models=["fake-gaussian"], twin=False)
    code, report = compare_json(capsys, monkeypatch, alone, path, twin=False)
    assert code == 0 and report["passed"]
    absent = [r for r in report["rows"] if r["verdict"] == "not-installed"]
    assert {r["model"] for r in absent} == {"fake-twin"} and len(absent) == 5
    assert {r["note"] for r in absent} == {"plugin not installed: twin_fakes (registers model fake-twin)"}
    assert report["counts"]["missing"] == 0
    code, out, _ = cli(capsys, monkeypatch, "compare", alone, "--baseline", path, twin=False)
    assert code == 0 and "Not installed" in out and "twin_fakes (registers model fake-twin): 5 row(s)" in out
    code, report = compare_json(capsys, monkeypatch, alone, path, "--require-all-plugins", twin=False)
    assert code == 1 and {r["verdict"] for r in report["rows"] if r["model"] == "fake-twin"} == {"not-installed"}


def test_rows_that_went_missing_from_an_installed_plugin_still_fail(exact, tmp_path, capsys, monkeypatch):
    _, path = exact
    alone = run_suite(tmp_path / "alone", EXACT_METRICS, models=["fake-gaussian"])
    code, report = compare_json(capsys, monkeypatch, alone, path, twin=True)
    assert code == 1 and report["counts"]["missing"] == 5 and report["counts"]["not-installed"] == 0
    assert {r["model"] for r in report["rows"] if r["verdict"] == "missing"} == {"fake-twin"}


def test_a_disabled_plugin_counts_as_not_installed_and_a_broken_one_as_missing(exact):
    results, path = exact
    doc = json.loads(path.read_text())
    loaded = regression.load_results(results)
    loaded.rows = loaded.rows[loaded.rows["model"] != "fake-twin"]
    base = {"regression_fakes": "", "likelihood_metrics": "", "speed_metrics": ""}
    disabled = regression.compare(doc, loaded, plugins={**base, "twin_fakes": regression.DISABLED})
    assert disabled.exit_code == 0 and disabled.counts["not-installed"] == 5
    assert all("disabled" in r.note for r in disabled.rows if r.verdict == "not-installed")
    broken = regression.compare(doc, loaded, plugins={**base, "twin_fakes": "ImportError: no module named x"})
    assert broken.exit_code == 1 and broken.counts["missing"] == 5
    assert all(r.note == "plugin twin_fakes failed to load: ImportError: no module named x"
               for r in broken.rows if r.verdict == "missing")


# ----------------------------------------------------------------------------- report A B follows the same rule

def pair_json(capsys, monkeypatch, a, b):
    code, out, err = cli(capsys, monkeypatch, "report", a, b, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_report_of_two_runs_judges_speed_cells_by_the_machine_rule(exact, tmp_path, capsys, monkeypatch):
    """`report A B` says whether the runs share a machine and, as compare does, normalises B's speed
    figures by the calibrations across machines, compares them as measured on one machine, and leaves
    them uncompared when a run records no machine."""
    results, _ = exact
    rate_cells = lambda doc: {r["model"]: r for r in doc["rows"] if r["metric"] == "fake_rate"}  # noqa: E731

    slower = as_another_machine(results, tmp_path / "slower", speed=0.4, calibration_speed=0.4)
    doc = pair_json(capsys, monkeypatch, results, slower)
    assert doc["speed"]["mode"] == "normalised" and not doc["speed"]["same_machine"]
    assert doc["speed"]["factor"] == pytest.approx(0.4, rel=1e-9)
    assert any(n.startswith("Speed: the runs come from different machines") for n in doc["notes"])
    for cell in rate_cells(doc).values():
        assert cell["verdict"] == "unchanged"
        assert cell["b"]["mean"] == pytest.approx(0.4 * cell["a"]["mean"], rel=1e-9)
        assert cell["normalised"]["mean"] == pytest.approx(cell["a"]["mean"], rel=1e-9)
    assert {r["verdict"] for r in doc["rows"]} == {"unchanged"}

    same = as_another_machine(results, tmp_path / "same", speed=0.4, processor=None)
    doc = pair_json(capsys, monkeypatch, results, same)
    assert doc["speed"]["mode"] == "same-machine" and doc["speed"]["same_machine"]
    assert {m: c["verdict"] for m, c in rate_cells(doc).items()} == {m: "worse" for m in MODELS}
    assert all("normalised" not in c for c in rate_cells(doc).values())

    csv = tmp_path / "csv" / "results.csv"
    csv.parent.mkdir()
    shutil.copy(results / "results.csv", csv)
    doc = pair_json(capsys, monkeypatch, results, csv)
    assert doc["speed"]["mode"] == "not-compared" and "records no machine" in doc["speed"]["summary"]
    assert {c["verdict"] for c in rate_cells(doc).values()} == {"not comparable"}
    assert {r["verdict"] for r in doc["rows"] if r["metric"] != "fake_rate"} == {"unchanged"}
