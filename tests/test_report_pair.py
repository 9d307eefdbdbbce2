"""`report DIR_A DIR_B`: two runs side by side, each cell decided by the regression gate's rule.

Runs of the fake plugins of tests/fake_plugins/regression_fakes.py (a Gaussian fitted on a seeded subset,
so its NLL genuinely varies with the seed): the same code with other seeds marks nothing as changed;
a planted, clearly worse likelihood is marked worse in exactly the likelihood cells, with the change
pandas computes from the two results.csv files; other profiles are not compared."""

from __future__ import annotations

import importlib.metadata
import json

import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.host import PluginHost
from harness.profiles import get_profile
from harness.comparison import decide, load_results, summarise, tolerance_for
from harness.evidence import paired_difference
from harness.report import write_reports
from harness.runner import Runner
from tests.fake_plugins.regression_fakes import RegressionFakes

torch.set_num_threads(1)

METRICS = ["nll", "fake_score", "fake_rate", "fake_loss"]


def run_suite(out, seeds, profile="smoke", **planted):
    host = PluginHost()
    names = {ep.name for ep in importlib.metadata.entry_points(group="harness")}
    host.load_entry_points(strict=False, blocked=names - {"likelihood_metrics"})
    host.add_plugin(RegressionFakes(**planted), "regression_fakes")
    runner = Runner(host, get_profile(profile), out, seeds=list(seeds), metrics=METRICS)
    store, _ = runner.run(runner.plan(["fake-gaussian"], None, False))
    write_reports(store.results(), out, outputs=store.outputs())
    store.close()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    return {"a": run_suite(root / "a", (0, 1, 2)), "again": run_suite(root / "again", (3, 4, 5)),
            "worse": run_suite(root / "worse", (3, 4, 5), variance_scale=3.0),
            "quick": run_suite(root / "quick", (0, 1, 2), profile="quick")}


def pair_json(capsys, a, b, *extra):
    code = main(["report", str(a), str(b), "--format", "json", *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def verdicts(doc) -> dict:
    return {row["metric"]: row["verdict"] for row in doc["rows"]}


def test_other_seeds_of_the_same_code_change_nothing(runs, capsys):
    doc = pair_json(capsys, runs["a"], runs["again"])
    assert set(verdicts(doc)) == {"nll", "nll_gap", "fake_score", "fake_rate", "fake_loss"}
    assert set(verdicts(doc).values()) == {"unchanged"}
    html = (runs["again"] / "comparison.html").read_text()  # default: written next to B
    assert "class='worse'" not in html and "class='better'" not in html
    assert html.count("class='unchanged'") == 5


def test_a_worse_run_is_marked_worse_in_the_likelihood_cells(runs, capsys, tmp_path):
    doc = pair_json(capsys, runs["a"], runs["worse"], "--out", str(tmp_path))
    v = verdicts(doc)
    assert v["nll"] == v["nll_gap"] == "worse"
    assert v["fake_score"] == v["fake_loss"] == v["fake_rate"] == "unchanged"
    # The change is B's mean minus A's, as pandas computes it from the two results.csv files.
    means = [pd.read_csv(runs[k] / "results.csv").query("metric == 'nll' and status == 'ok'")["value"].mean()
             for k in ("a", "worse")]
    row = next(r for r in doc["rows"] if r["metric"] == "nll")
    assert row["delta"] == pytest.approx(means[1] - means[0], rel=1e-9)
    # both runs kept the per-example values of the same test examples: the test is paired
    assert row["a"]["n_seeds"] == row["b"]["n_seeds"] == 3 and row["test"] == "paired" and row["p_worse"] < 0.01
    assert row["paired"] and any("judged paired" in n for n in doc["notes"])
    assert next(r for r in doc["rows"] if r["metric"] == "fake_score")["test"] == "welch"  # no per-example values
    # The same decision as the gate's rule called directly on the two summaries and their per-example values.
    ra, rb = load_results(runs["a"]), load_results(runs["worse"])
    ea = {e.id: e for e in summarise(ra)}
    eb = {e.id: e for e in summarise(rb)}
    paired = paired_difference(rb.per_example(eb["nll"]), ra.per_example(ea["nll"]))
    expected = decide(ea["nll"].stats, eb["nll"].stats, False, tolerance_for(eb["nll"], rb.outputs["nll"]),
                      paired=paired)
    assert row["p_worse"] == pytest.approx(expected.p_worse)
    html = (tmp_path / "comparison.html").read_text()
    assert html.count("class='worse'") == 2 and "B is significantly worse" in html
    md = (tmp_path / "comparison.md").read_text()
    assert md.count("**worse**") == 2


def test_the_terminal_lists_what_changed(runs, capsys):
    assert main(["report", str(runs["a"]), str(runs["worse"])]) == 0
    out = capsys.readouterr().out
    assert "2 worse, 3 unchanged" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  ")] == ["WORSE", "WORSE"]
    assert "comparison.html" in out.splitlines()[-1]


def test_other_profiles_are_not_compared(runs, capsys):
    doc = pair_json(capsys, runs["a"], runs["quick"])
    assert set(verdicts(doc).values()) == {"not comparable"}
    assert any("profiles differ" in n for n in doc["notes"])


def test_usage_errors_exit_2(runs, capsys, tmp_path):
    a = str(runs["a"])
    for argv in (["report", a, a, a], ["report", a, a, "--format", "latex"], ["report", a, "--alpha", "0.05"],
                 ["report", a, str(tmp_path / "nowhere")], ["report", a, a, "--alpha", "2"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error:") and "Traceback" not in err
