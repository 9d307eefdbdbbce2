"""The comparison engine (harness/comparison/) as both of its callers see it.

Runs of the fake plugins of tests/fake_plugins/regression_fakes.py (a Gaussian fitted on a seeded
subset, a score, a deterministic stand-in for a throughput, an outside loss) and of two outside
metrics defined here:

- ``compare`` against a baseline made of run A and ``report A B`` give every row of the same pair of
  runs the same verdict, on one machine and across machines;
- a third-party speed output that does not declare how it scales with machine speed is compared on
  the same machine and not across machines (where one declaring a rate is normalised);
- a failed quality metric stays a quality row (its stored row carries no estimator mark), a failed
  speed metric a speed row: the row's kind comes from the metric's declaration;
- declarations stored before outputs declared role and scaling take them from the installed metric's.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sqlite3

import pytest
import torch

from harness import Measurement, MetricSpec, Output, Role, Scaling, hookimpl, regression
from harness.comparison import Verdict, is_speed, load_results
from harness.contracts import SPEED, Tolerance
from harness.host import PluginHost
from harness.profiles import get_profile
from harness.report.pair import compare_runs
from harness.runner import Runner
from tests.fake_plugins.regression_fakes import RegressionFakes, _only_fakes
from tests.test_machine_rule import as_another_machine

torch.set_num_threads(1)

METRICS = ["nll", "fake_score", "fake_rate", "fake_loss"]
UNDECLARED, DECLARED = "outside_rate", "outside_rate_declared"


class OutsideMetrics:
    """Two outside speed outputs reporting the fake model's rate, one without a declared scaling (a
    third-party metric written before outputs declared it), and two outside metrics that fail when
    ``fail`` (a quality score and a speed figure)."""

    def __init__(self, fail=False):
        self.fail = fail

    @hookimpl
    def harness_register_metrics(self, register):
        fail = self.fail

        def rates(ctx):
            rate = ctx.model.rate
            return [Measurement(UNDECLARED, rate, stderr=0.02 * rate, n=3),
                    Measurement(DECLARED, rate, stderr=0.02 * rate, n=3)]

        def fragile(name, value):
            def compute(ctx):
                if fail:
                    raise RuntimeError(f"planted failure in {name}")
                return [Measurement(name, value, stderr=0.01, n=1)]
            return compute

        register(MetricSpec(name="outside_rates", compute=rates, applies=_only_fakes, outputs=[
            Output(UNDECLARED, "samples per second", True, kind=SPEED, estimator="measured"),
            Output(DECLARED, "samples per second", True, kind=SPEED, estimator="measured", scaling=Scaling.RATE)]))
        register(MetricSpec(name="fragile_score", compute=fragile("fragile_score", 0.5), applies=_only_fakes,
                            outputs=[Output("fragile_score", "", True, estimator="statistic",
                                            tolerance=Tolerance(absolute=0.1))]))
        register(MetricSpec(name="fragile_rate", compute=fragile("fragile_rate", 100.0), applies=_only_fakes,
                            outputs=[Output("fragile_rate", "samples/s", True, kind=SPEED, estimator="measured",
                                            scaling=Scaling.RATE)]))


def run_suite(out, seeds, metrics=METRICS, fail=False, **planted):
    host = PluginHost()
    names = {ep.name for ep in importlib.metadata.entry_points(group="harness")}
    host.load_entry_points(strict=False, blocked=names - {"likelihood_metrics"})
    host.add_plugin(RegressionFakes(**planted), "regression_fakes")
    host.add_plugin(OutsideMetrics(fail), "outside_metrics")
    runner = Runner(host, get_profile("smoke"), out, seeds=list(seeds), metrics=metrics)
    store, _ = runner.run(runner.plan(["fake-gaussian"], None, False))
    store.close()
    return out


def gate(reference, current, **kwargs):
    """compare ``current`` against a baseline made of ``reference``."""
    doc = regression.make_baseline(load_results(reference))
    return regression.compare(doc, load_results(current), **kwargs)


def pair_verdicts(pair) -> dict:
    return {(model, dataset, ident): cell.verdict
            for dataset, table in pair.tables.items() for (model, ident), cell in table.cells.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("comparison")
    a = run_suite(root / "a", (0, 1, 2))
    # Other seeds, a clearly worse likelihood, a better score, a third of the throughput; fake_loss dropped.
    b = run_suite(root / "b", (3, 4, 5), metrics=METRICS[:3], variance_scale=3.0, score_offset=0.3, rate=300.0)
    return root, a, b


def test_compare_and_report_a_b_give_every_row_the_same_verdict(runs):
    root, a, b = runs
    comparison = gate(a, b)
    gate_verdicts = {r.key: r.verdict for r in comparison.rows}
    assert pair_verdicts(compare_runs(a, b)) == gate_verdicts
    assert set(gate_verdicts.values()) == {Verdict.WORSE, Verdict.BETTER, Verdict.MISSING}
    assert gate_verdicts[("fake-gaussian", "reg-blobs", "fake_rate")] == Verdict.WORSE  # a speed row
    assert gate_verdicts[("fake-gaussian", "reg-blobs", "fake_loss")] == Verdict.MISSING
    # Across machines: B as a machine 2.5 times as fast as A's whose calibration says so (A's calibration,
    # its times divided by 2.5: the two runs' own calibrations differ with this machine's load); both
    # normalise.
    (info,) = load_results(a).machines.values()
    calibration = json.loads(json.dumps(info["calibration"]))
    faster = as_another_machine(b, root / "faster", speed=2.5, calibration_speed=2.5, calibration=calibration)
    comparison = gate(a, faster)
    assert comparison.speed.mode == "normalised" and comparison.speed.factor.factor == pytest.approx(2.5)
    gate_verdicts = {r.key: r.verdict for r in comparison.rows}
    assert pair_verdicts(compare_runs(a, faster)) == gate_verdicts
    assert gate_verdicts[("fake-gaussian", "reg-blobs", "fake_rate")] == Verdict.WORSE
    # The other way round, with its new row and a speed row better by the same factor.
    gate_verdicts = {r.key: r.verdict for r in gate(b, a).rows}
    assert pair_verdicts(compare_runs(b, a)) == gate_verdicts
    assert gate_verdicts[("fake-gaussian", "reg-blobs", "fake_loss")] == Verdict.NEW
    assert gate_verdicts[("fake-gaussian", "reg-blobs", "fake_rate")] == Verdict.BETTER


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    root = tmp_path_factory.mktemp("outside")
    return root, run_suite(root / "run", (0, 1, 2), metrics=["outside_rates"])


def rescale(directory, metric, factor):
    db = sqlite3.connect(directory / "results.sqlite")
    db.execute("UPDATE measurements SET value = value * ?, stderr = stderr * ? WHERE metric = ?",
               (factor, factor, metric))
    db.commit()
    db.close()


def test_a_speed_output_without_declared_scaling_is_compared_only_on_the_same_machine(outside):
    root, run = outside
    declared = load_results(run).outputs
    assert declared[UNDECLARED].scaling is None and declared[DECLARED].scaling == Scaling.RATE
    # On the same machine both are compared as measured: a third of the throughput is worse.
    slower = root / "slower"
    as_another_machine(run, slower, speed=1 / 3, processor=None)
    rescale(slower, UNDECLARED, 1 / 3)  # the store helper moves declared rates only
    rows = {r.id: r for r in gate(run, slower).rows}
    assert rows[UNDECLARED].verdict == rows[DECLARED].verdict == Verdict.WORSE
    # On a machine a third as fast, as its calibration says: the declared rate is normalised back to the
    # reference's figure; the undeclared one is not compared (its raw figure would read three times worse).
    moved = root / "moved"
    as_another_machine(run, moved, speed=1 / 3, calibration_speed=1 / 3)
    rescale(moved, UNDECLARED, 1 / 3)
    comparison = gate(run, moved)
    assert comparison.speed.mode == "normalised" and comparison.exit_code == 0
    rows = {r.id: r for r in comparison.rows}
    assert rows[DECLARED].verdict == Verdict.UNCHANGED
    assert rows[DECLARED].normalised.mean == pytest.approx(rows[DECLARED].reference.mean, rel=1e-9)
    assert rows[UNDECLARED].verdict == Verdict.NOT_COMPARED and rows[UNDECLARED].decision is None
    assert "does not declare how it scales with machine speed" in rows[UNDECLARED].note
    cells = {ident: cell for (_, ident), cell in compare_runs(run, moved).tables["reg-blobs"].cells.items()}
    assert cells[UNDECLARED].label == "not comparable" and "does not declare" in cells[UNDECLARED].note
    assert cells[DECLARED].verdict == Verdict.UNCHANGED


def test_a_failed_metric_keeps_the_kind_its_declaration_gives(tmp_path):
    metrics = ["nll", "fragile_score", "fragile_rate"]
    good = run_suite(tmp_path / "good", (0, 1), metrics=metrics)
    bad = run_suite(tmp_path / "bad", (0, 1), metrics=metrics, fail=True)
    db = sqlite3.connect(bad / "results.sqlite")
    marks = db.execute("SELECT DISTINCT estimator FROM measurements WHERE status = 'failed'").fetchall()
    db.close()
    assert marks == [(None,)]  # no "measured" mark on a metric that measured nothing
    outputs = load_results(bad).outputs
    assert not is_speed(outputs["fragile_score"]) and is_speed(outputs["fragile_rate"])
    doc = regression.make_baseline(load_results(good))
    assert "fragile_score" in {e["id"] for e in doc["entries"]}  # the quality rows, not a machine's section
    report = regression.compare(doc, load_results(bad)).to_dict()
    kinds = {r["metric"]: (r["verdict"], r["kind"]) for r in report["rows"]}
    assert kinds["fragile_score"] == ("failed", "quality") and kinds["fragile_rate"] == ("failed", "speed")
    assert kinds["nll"][1] == "quality" and report["exit_code"] == 1
    # Without baseline rows for them the failures are still listed, each with its declared kind.
    for section in doc["machines"].values():
        section["entries"] = [e for e in section["entries"] if e["id"] != "fragile_rate"]
    doc["entries"] = [e for e in doc["entries"] if e["id"] != "fragile_score"]
    rows = regression.compare(doc, load_results(bad)).to_dict()["rows"]
    leftover = {r["metric"]: r for r in rows if "no baseline row" in r["note"]}
    assert {m: r["kind"] for m, r in leftover.items()} == {"fragile_score": "quality", "fragile_rate": "speed"}
    assert all(r["verdict"] == "failed" and "planted failure" in r["note"] for r in leftover.values())


def test_declarations_stored_before_role_and_scaling_take_them_from_the_installed_metric(outside, tmp_path):
    _, run = outside
    old = tmp_path / "old"
    shutil.copytree(run, old)
    db = sqlite3.connect(old / "results.sqlite")
    for name, text in db.execute("SELECT name, declaration FROM outputs").fetchall():
        decl = {k: v for k, v in json.loads(text).items() if k not in ("role", "scaling")}
        db.execute("UPDATE outputs SET declaration = ? WHERE name = ?", (json.dumps(decl), name))
    db.commit()
    db.close()
    assert load_results(old).outputs[DECLARED].scaling is None  # read alone: undeclared
    installed = {DECLARED: Output(DECLARED, "samples/s", True, kind=SPEED, scaling=Scaling.RATE),
                 "nll": Output("nll", "nats", role=Role.LIKELIHOOD)}
    outputs = load_results(old, installed).outputs
    assert outputs[DECLARED].scaling == Scaling.RATE and outputs[UNDECLARED].scaling is None
    assert Output.from_dict({"name": "nll", "unit": "nats"}, installed["nll"]).role == Role.LIKELIHOOD
    assert Output.from_dict({"name": "nll", "unit": "nats"}).role == Role.OTHER
    # A declaration of another kind says nothing about it.
    assert Output.from_dict({"name": "x", "kind": SPEED}, installed["nll"]).scaling is None
