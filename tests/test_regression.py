"""The regression gate (harness/regression.py, `baseline` and `compare` commands).

End to end through harness.runner.Runner with the fake plugins of tests/fake_plugins/regression_fakes.py
and the built-in nll metric: a planted likelihood regression is caught (exit 1), a rerun with other
seeds passes (exit 0), a baseline from other data or another profile exits 2, direction and speed
rules hold. The decision itself is checked against scipy on hand-made summary statistics, and the
baseline's numbers against pandas on results.csv.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import shutil

import pandas as pd
import pytest
import torch
from scipy import stats

from harness import Tolerance, regression
from harness.cli import main
from harness.contracts import SPEED_TOLERANCE
from harness.data import provenance_hash
from harness.host import PluginHost
from harness.profiles import get_profile
from harness.report import write_reports
from harness.runner import Runner
from tests.fake_plugins.regression_fakes import RegressionFakes, blobs

torch.set_num_threads(1)

METRICS = ["nll", "fake_score", "fake_rate", "fake_loss"]
BASE_SEEDS = (0, 1, 2)


def make_host(**planted) -> PluginHost:
    """Only the built-in nll metric from the installed plugins, plus the fakes with planted changes."""
    host = PluginHost()
    names = {ep.name for ep in importlib.metadata.entry_points(group="harness")}
    host.load_entry_points(strict=False, blocked=names - {"likelihood_metrics"})
    host.add_plugin(RegressionFakes(**planted), "regression_fakes")
    return host


def run_suite(out, seeds=BASE_SEEDS, profile="smoke", metrics=METRICS, **planted):
    runner = Runner(make_host(**planted), get_profile(profile), out, seeds=list(seeds), metrics=metrics)
    store, summary = runner.run(runner.plan(["fake-gaussian"], None, False))
    write_reports(store.results(), out, outputs=store.outputs())
    store.close()
    return out


def cli(capsys, *argv):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def compare_json(capsys, results, baseline, *extra):
    code, out, err = cli(capsys, "compare", results, "--baseline", baseline, "--format", "json", *extra)
    return code, json.loads(out)


def rows_by_metric(report, model="fake-gaussian"):
    return {r["metric"]: r for r in report["rows"] if r["model"] == model}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The reference run (seeds 0..2, no planted change) and its baseline file."""
    root = tmp_path_factory.mktemp("baseline")
    results = run_suite(root / "results")
    path = root / "smoke.json"
    assert main(["baseline", "save", str(results), "--to", str(path)]) == 0
    return results, path


# ----------------------------------------------------------------------------- baseline contents

def test_baseline_summarises_seeds_as_pandas_does(base):
    results, path = base
    doc = json.loads(path.read_text())
    df = pd.read_csv(results / "results.csv")
    ok = df[df["status"] == "ok"]
    expected = ok.groupby(["dataset", "model", "metric"])["value"].agg(["mean", "std", "count"])
    # Quality rows in entries; the speed row (fake_rate) in the section of the machine that made it, from
    # the one job that measured speed (the lowest seed's; the others point at it).
    (machine, section), = doc["machines"].items()
    assert {e["id"] for e in doc["entries"]} == {"nll", "nll_gap", "fake_score", "fake_loss"}
    assert [e["id"] for e in section["entries"]] == ["fake_rate"] and section["seeds"] == [0]
    run_info = regression.load_results(results).machines
    assert [m["id"] for m in run_info.values()] == [machine]
    assert section["fingerprint"] == next(iter(run_info.values()))["fingerprint"]
    assert set(section["calibration"]["workloads"]) == {"matmul", "conv2d", "small_ops"}
    assert doc["owners"]["models"] == {"fake-gaussian": "regression_fakes"}
    assert doc["owners"]["outputs"]["nll"] == "likelihood_metrics"
    every = doc["entries"] + section["entries"]
    assert len(every) == len(expected) == 5  # nll, nll_gap, fake_score, fake_rate, fake_loss
    for e in every:
        ref = expected.loc[(e["dataset"], e["model"], e["metric"])]
        if e["id"] == "fake_rate":  # speed: one job's figure, the lowest seed's
            assert e["n_seeds"] == ref["count"] == 1 and e["seeds"] == [0]
            assert e["mean"] == pytest.approx(ref["mean"], rel=1e-12)
            continue
        assert e["n_seeds"] == ref["count"] == 3 and e["seeds"] == [0, 1, 2]
        assert e["mean"] == pytest.approx(ref["mean"], rel=1e-12)
        assert e["stderr"] == pytest.approx(ref["std"] / math.sqrt(3), rel=1e-9)
        assert e["stderr"] > 0  # the fake model has real seed noise
    directions = {e["id"]: e["higher_is_better"] for e in every}
    assert directions == {"nll": False, "nll_gap": False, "fake_score": True, "fake_rate": True, "fake_loss": False}
    # Provenance: the dataset hash the runner uses, the profile, versions, a hash of the hyperparameters.
    assert doc["datasets"] == {"reg-blobs": provenance_hash(blobs(0.0), "reg-blobs:1")}
    assert doc["profile"] == "smoke" and doc["versions"]["torch"] == torch.__version__
    model = doc["models"]["fake-gaussian"]
    assert model["hparams"] == {"fit_examples": 100}
    assert model["hparams_hash"] == hashlib.sha256(b'{"fit_examples": 100}').hexdigest()[:16]
    # Deterministic: saved again, only the date may differ; entries come sorted.
    again = regression.make_baseline(regression.load_results(results), created=doc["created"])
    assert json.dumps(again, indent=2) + "\n" == path.read_text()
    keys = [(e["dataset"], e["model"], e["id"]) for e in doc["entries"]]
    assert keys == sorted(keys)


def test_baseline_show_lists_every_entry(base, capsys):
    _, path = base
    code, out, _ = cli(capsys, "baseline", "show", path)
    assert code == 0
    for metric in ("nll", "nll_gap", "fake_score", "fake_rate", "fake_loss"):
        assert f"| {metric} " in out
    code, out, _ = cli(capsys, "baseline", "show", path, "--format", "json")
    assert code == 0 and json.loads(out) == json.loads(path.read_text())


# ----------------------------------------------------------------------------- the gate end to end

def test_rerun_with_other_seeds_passes(base, tmp_path, capsys):
    results, path = base
    rerun = run_suite(tmp_path / "rerun", seeds=(3, 4, 5))
    code, report = compare_json(capsys, rerun, path)
    assert code == 0 and report["passed"]
    rows = rows_by_metric(report)
    assert {r["verdict"] for r in rows.values()} == {"unchanged"}
    # The seeds really moved the numbers: the gate passed on noise, not on identical values.
    nll = rows["nll"]
    assert nll["delta"] != 0 and nll["current"]["stderr"] > 0 and nll["baseline"]["stderr"] > 0
    assert any("seeds differ" in n for n in report["notes"])


def test_planted_likelihood_regression_is_caught(base, tmp_path, capsys):
    results, path = base
    worse = run_suite(tmp_path / "worse", variance_scale=3.0)
    summary = tmp_path / "summary.md"
    code, out, err = cli(capsys, "compare", worse, "--baseline", path, "--summary", summary)
    assert code == 1 and "regression check failed" in err
    md = summary.read_text()
    assert md == out and "FAIL" in md
    worse_lines = [line for line in md.splitlines() if line.startswith("| worse")]
    assert any("fake-gaussian" in line and "| nll [nats]" in line for line in worse_lines)
    # The decision against pandas and scipy on the two results.csv files.
    code, report = compare_json(capsys, worse, path)
    row = rows_by_metric(report)["nll"]

    def nll_stats(directory):
        v = pd.read_csv(directory / "results.csv").query("metric == 'nll' and status == 'ok'")["value"]
        return v.mean(), v.std(ddof=1), len(v)

    (m0, s0, n0), (m1, s1, n1) = nll_stats(results), nll_stats(worse)
    assert row["delta"] == pytest.approx(m1 - m0, rel=1e-9)
    p = stats.ttest_ind_from_stats(m1, s1, n1, m0, s0, n0, equal_var=False, alternative="greater").pvalue
    assert row["p_worse"] == pytest.approx(p, rel=1e-6) and p < 0.01
    assert m1 - m0 > max(0.05, 0.02 * m0)


def test_baseline_from_another_dataset_hash_exits_2(base, tmp_path, capsys):
    _, path = base
    shifted = run_suite(tmp_path / "shifted", dataset_shift=0.5)
    summary = tmp_path / "summary.md"
    code, out, err = cli(capsys, "compare", shifted, "--baseline", path, "--summary", summary)
    assert code == 2 and out == ""
    old, new = provenance_hash(blobs(0.0), "reg-blobs:1"), provenance_hash(blobs(0.5), "reg-blobs:1")
    assert "does not match" in err and "dataset 'reg-blobs'" in err
    assert old[:12] in err and new[:12] in err
    assert "python -m harness baseline save" in err and "commit" in err
    assert "does not match" in summary.read_text()


def test_baseline_from_another_profile_exits_2(base, tmp_path, capsys):
    _, path = base
    quick = run_suite(tmp_path / "quick", profile="quick")
    code, _, err = cli(capsys, "compare", quick, "--baseline", path)
    assert code == 2
    assert "profile: the baseline was made with 'smoke', the results with 'quick'" in err


def test_higher_is_better_going_up_is_better_and_down_is_worse(base, tmp_path, capsys):
    _, path = base
    code, report = compare_json(capsys, run_suite(tmp_path / "up", score_offset=0.3), path)
    assert code == 0 and rows_by_metric(report)["fake_score"]["verdict"] == "better"
    assert rows_by_metric(report)["fake_score"]["delta"] == pytest.approx(0.3, abs=0.1)
    code, report = compare_json(capsys, run_suite(tmp_path / "down", score_offset=-0.3), path)
    assert code == 1 and rows_by_metric(report)["fake_score"]["verdict"] == "worse"


def test_an_outside_metrics_direction_and_tolerance_reach_compare_and_the_report(base, tmp_path, capsys):
    """fake_loss is lower-is-better with an absolute floor of 0.25 (its plugin's declaration, which
    no table in the core knows): +0.15 is within the floor, +0.4 worse, -0.4 better."""
    _, path = base
    code, report = compare_json(capsys, run_suite(tmp_path / "l1", loss_offset=0.15), path)
    row = rows_by_metric(report)["fake_loss"]
    assert code == 0 and row["verdict"] == "unchanged" and row["p_worse"] < 0.01
    assert row["tolerance"] == {"relative": 0.0, "absolute": 0.25, "ratio": False}
    code, report = compare_json(capsys, run_suite(tmp_path / "l2", loss_offset=0.4), path)
    assert code == 1 and rows_by_metric(report)["fake_loss"]["verdict"] == "worse"
    code, report = compare_json(capsys, run_suite(tmp_path / "l3", loss_offset=-0.4), path)
    assert code == 0 and rows_by_metric(report)["fake_loss"]["verdict"] == "better"
    # The report puts the declared order first: fake_loss (order 1) before nll.
    header = next(line for line in (tmp_path / "l3" / "report.md").read_text().splitlines()
                  if line.startswith("|") and "nll" in line)
    assert header.index("fake_loss") < header.index("nll [nats]")


def test_speed_needs_a_large_relative_slowdown(base, tmp_path, capsys):
    _, path = base
    code, report = compare_json(capsys, run_suite(tmp_path / "slower", rate=600.0), path)
    row = rows_by_metric(report)["fake_rate"]
    # 40% slower (same seeds, so exactly x0.6) is significant by the test alone, but within the 2x
    # speed floor: not a regression.
    assert row["p_worse"] < 0.01 and row["ratio"] == pytest.approx(0.6, rel=1e-9)
    assert code == 0 and row["verdict"] == "unchanged"
    code, report = compare_json(capsys, run_suite(tmp_path / "crawl", rate=300.0), path)
    assert code == 1 and rows_by_metric(report)["fake_rate"]["verdict"] == "worse"


def test_failed_job_with_a_baseline_row_is_a_regression(base, tmp_path, capsys):
    _, path = base
    code, report = compare_json(capsys, run_suite(tmp_path / "broken", fail_fit=True), path)
    assert code == 1
    rows = rows_by_metric(report)
    assert {r["verdict"] for r in rows.values()} == {"failed"} and len(rows) == 5
    assert rows["nll"]["note"].startswith("failed: RuntimeError: planted failure in fit")


def test_missing_rows_fail_unless_allowed_and_new_rows_do_not(base, tmp_path, capsys, monkeypatch):
    """The fakes' plugin is installed (the CLI's host has it), so rows that went missing fail."""
    results, path = base
    monkeypatch.setattr("harness.host.get_host", lambda: make_host())
    nll_only = run_suite(tmp_path / "nll-only", metrics=["nll"])
    code, report = compare_json(capsys, nll_only, path)
    assert code == 1 and report["counts"]["missing"] == 3
    assert {r["metric"] for r in report["rows"] if r["verdict"] == "missing"} == {"fake_score", "fake_rate",
                                                                                   "fake_loss"}
    code, report = compare_json(capsys, nll_only, path, "--allow-missing")
    assert code == 0 and report["counts"]["missing"] == 3
    # The other way round, the fake metrics are new rows, which never fail the gate.
    small = tmp_path / "nll-only.json"
    assert main(["baseline", "save", str(nll_only), "--to", str(small)]) == 0
    capsys.readouterr()
    code, report = compare_json(capsys, results, small)
    # The quality metrics are new rows; the speed row is not compared: that baseline has no speed figures.
    assert code == 0 and report["counts"]["new"] == 2 and report["counts"]["not-compared"] == 1
    assert report["speed"]["mode"] == "not-compared" and "no speed figures" in report["speed"]["summary"]


def test_csv_results_give_the_same_summary(base, tmp_path):
    results, path = base
    csv = tmp_path / "copy" / "results.csv"
    csv.parent.mkdir()
    shutil.copy(results / "results.csv", csv)
    outputs = {name: out for name, (_, out) in make_host().registry.output_declarations().items()}
    loaded = regression.load_results(csv, outputs=outputs)
    assert loaded.datasets == {} and loaded.notes  # a CSV carries no provenance; that is said
    from_csv = {e.key: e for e in regression.summarise(loaded)}
    from_store = {e.key: e for e in regression.summarise(regression.load_results(results))}
    assert from_csv.keys() == from_store.keys()
    for key, e in from_store.items():
        assert from_csv[key].mean == pytest.approx(e.mean, rel=1e-12)
        assert from_csv[key].higher_is_better == e.higher_is_better
    comparison = regression.compare(json.loads(path.read_text()), loaded)
    assert comparison.exit_code == 0
    # A hand-made CSV without run ids reads the same.
    pd.read_csv(csv).drop(columns="run_id").to_csv(csv, index=False)
    bare = regression.summarise(regression.load_results(csv, outputs=outputs))
    assert [(e.key, e.mean) for e in bare] == [(e.key, from_csv[e.key].mean) for e in bare] and len(bare) == 5


def test_csv_with_a_metric_of_unknown_direction_is_refused(base, tmp_path, capsys):
    results, _ = base
    csv = tmp_path / "results.csv"
    shutil.copy(results / "results.csv", csv)
    # fake_score is not registered in the CLI's host, and neither its name nor its unit says its direction.
    code, _, err = cli(capsys, "baseline", "save", csv, "--to", tmp_path / "b.json")
    assert code == 2 and "direction" in err and "fake_score" in err and not (tmp_path / "b.json").exists()


def test_usage_errors_exit_2(base, tmp_path, capsys):
    results, path = base
    code, _, err = cli(capsys, "compare", results, "--baseline", tmp_path / "nope.json")
    assert code == 2 and "no baseline at" in err
    code, _, err = cli(capsys, "compare", results, "--baseline", path, "--alpha", "1.5")
    assert code == 2 and "alpha" in err
    code, _, err = cli(capsys, "compare", tmp_path, "--baseline", path)
    assert code == 2 and "no results in" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    code, _, err = cli(capsys, "baseline", "show", bad)
    assert code == 2 and "not a harness baseline" in err


# ----------------------------------------------------------------------------- the decision against scipy

NATS = Tolerance(relative=0.02, absolute=0.05)


def test_the_nll_floor_is_what_the_likelihood_metric_declares():
    """The decision tests below use the nll metric's declared floor: max(0.05 nats, 2%)."""
    nll = make_host().metric("nll").output("nll")
    assert nll.tolerance == NATS


def welch_p(cur, base, alternative):
    """Welch's one-sided p by hand (t statistic and Welch-Satterthwaite df), scipy only for the t tail."""
    v1, v0 = cur.stderr**2, base.stderr**2
    t = (cur.mean - base.mean) / math.sqrt(v1 + v0)
    df = (v1 + v0) ** 2 / (v1**2 / (cur.n - 1) + v0**2 / (base.n - 1))
    return stats.t.sf(t, df) if alternative == "greater" else stats.t.cdf(t, df)


@pytest.mark.parametrize("base, cur, higher, verdict", [
    # lower is better (nats, floor max(0.05, 2%) = 0.2 at 10): worse beyond floor and noise
    (regression.Stats(10.0, 0.05, 3), regression.Stats(10.6, 0.05, 3), False, "worse"),
    # beyond the floor, but the seeds' spread explains it
    (regression.Stats(10.0, 0.5, 3), regression.Stats(10.6, 0.5, 3), False, "unchanged"),
    # significant, but within the floor
    (regression.Stats(10.0, 0.01, 3), regression.Stats(10.15, 0.01, 3), False, "unchanged"),
    # the same move is better for a higher-is-better metric
    (regression.Stats(10.0, 0.05, 3), regression.Stats(10.6, 0.05, 3), True, "better"),
    (regression.Stats(10.0, 0.05, 4), regression.Stats(9.2, 0.08, 5), True, "worse"),
])
def test_welch_decision_matches_scipy(base, cur, higher, verdict):
    d = regression.decide(base, cur, higher, NATS, alpha=0.01)
    worse_alt, better_alt = ("less", "greater") if higher else ("greater", "less")
    sd = lambda s: s.stderr * math.sqrt(s.n)  # noqa: E731
    p_worse = stats.ttest_ind_from_stats(cur.mean, sd(cur), cur.n, base.mean, sd(base), base.n,
                                         equal_var=False, alternative=worse_alt).pvalue
    p_better = stats.ttest_ind_from_stats(cur.mean, sd(cur), cur.n, base.mean, sd(base), base.n,
                                          equal_var=False, alternative=better_alt).pvalue
    assert d.test == "welch"
    assert d.p_worse == pytest.approx(p_worse, rel=1e-9) == pytest.approx(welch_p(cur, base, worse_alt), rel=1e-9)
    assert d.p_better == pytest.approx(p_better, rel=1e-9)
    assert d.verdict == verdict


def test_single_seed_uses_a_z_test_on_the_standard_errors():
    base, cur = regression.Stats(3.0, 0.02, 1), regression.Stats(3.1, 0.03, 3)
    d = regression.decide(base, cur, False, NATS, alpha=0.01)
    assert d.test == "z"
    assert d.p_worse == pytest.approx(stats.norm.sf(0.1 / math.hypot(0.02, 0.03)), rel=1e-9)
    assert d.verdict == "worse"  # 0.1 > max(0.05, 0.06) and p ~ 0.003


def test_no_spread_and_unknown_spread_leave_the_floor_to_decide():
    deterministic = regression.Stats(4.0, 0.0, 3)
    assert regression.decide(deterministic, regression.Stats(4.0 + 0.07, 0.0, 3), False, NATS).verdict == "unchanged"
    d = regression.decide(deterministic, regression.Stats(4.0 + 0.09, 0.0, 3), False, NATS)
    assert (d.verdict, d.test, d.p_worse) == ("worse", "no-spread", 0.0)
    unknown = regression.decide(regression.Stats(4.0, math.nan, 1), regression.Stats(4.09, math.nan, 1), False, NATS)
    assert (unknown.verdict, unknown.test, unknown.p_worse) == ("worse", "floor-only", None)


def test_speed_floor_is_a_ratio_in_either_direction_of_goodness():
    speed = latency = SPEED_TOLERANCE
    assert speed.ratio and speed.factor == 2.0
    tight = lambda m: regression.Stats(m, m * 0.001, 3)  # noqa: E731  negligible noise: the floor decides
    assert regression.decide(tight(1000), tight(510), True, speed).verdict == "unchanged"
    assert regression.decide(tight(1000), tight(490), True, speed).verdict == "worse"
    assert regression.decide(tight(1000), tight(2100), True, speed).verdict == "better"
    assert regression.decide(tight(10.0), tight(19.0), False, latency).verdict == "unchanged"
    assert regression.decide(tight(10.0), tight(21.0), False, latency).verdict == "worse"
