"""The evaluation protocol in a measurement's identity: declared by outputs, checked when bound, added by
the runner for speed, stored (old stores read as not recorded), combined over seeds, and refused by the
comparison engine when two sides differ; the paired decision; seeds by default per profile."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from harness.cli import main
from harness.comparison import (Entry, MachineSide, SignificanceTest, Side, Verdict, compare_sides, decide,
                                load_results, plan_speed, summarise)
from harness.comparison.engine import protocol_differences
from harness.contracts import (ExampleValues, Measurement, MetricContext, MetricSpec, Output, Tolerance,
                               UndeclaredMeasurement)
from harness.evidence import PerExample, paired_difference
from harness.jobs import JobResult
from harness.measuring import measure
from harness.profiles import get_profile
from harness.store import Store
from harness.summary import MIXED, combined_protocol


def _spec(measurement, **out):
    return MetricSpec("m", compute=lambda ctx: [measurement], outputs=[Output("m", "nats", protocol=("split",), **out)])


def test_outputs_declare_protocol_names_and_bind_refuses_a_measurement_without_them():
    out = Output("m", protocol=["split", "examples"])
    assert out.protocol == ("split", "examples") and Output.from_dict(out.as_dict()).protocol == out.protocol
    with pytest.raises(ValueError, match="protocol must be a sequence"):
        Output("m", protocol="split")
    spec = _spec(None)
    bound = spec.bind(Measurement("m", 1.0, estimator="exact", protocol={"split": "test", "draws": np.int64(2)}))
    assert bound.protocol == {"split": "test", "draws": 2} and type(bound.protocol["draws"]) is int
    with pytest.raises(UndeclaredMeasurement, match="does not record split"):
        spec.bind(Measurement("m", 1.0, estimator="exact"))
    with pytest.raises(UndeclaredMeasurement, match="must be a string, number"):
        spec.bind(Measurement("m", 1.0, estimator="exact", protocol={"split": {"nested": 1}}))


def test_per_example_values_must_average_to_the_value():
    spec = _spec(None)
    values = ExampleValues(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([5, 1, 9]))
    assert values.mean == pytest.approx(7 / 3) and values.indices.dtype == np.int64
    ok = Measurement("m", 7 / 3, estimator="exact", n=3, protocol={"split": "test"}, per_example=values)
    assert spec.bind(ok).per_example is values
    with pytest.raises(UndeclaredMeasurement, match="must average to the value"):
        spec.bind(Measurement("m", 2.0, estimator="exact", n=3, protocol={"split": "test"}, per_example=values))
    with pytest.raises(UndeclaredMeasurement, match="3 per-example values for n=4"):
        spec.bind(Measurement("m", 7 / 3, estimator="exact", n=4, protocol={"split": "test"}, per_example=values))
    with pytest.raises(ValueError, match="3 per-example values but 2 example indices"):
        ExampleValues(np.ones(3), np.arange(2))


def test_the_runner_adds_device_and_threads_to_every_speed_measurement():
    spec = MetricSpec("rate", compute=lambda ctx: [Measurement("rate", 5.0, protocol={"batch_size": 8})],
                      outputs=[Output("rate", "samples/s", True, kind="speed", estimator="measured")])
    ctx = MetricContext(model=None, model_spec=None, dataset=None, profile=None, device=torch.device("cpu"), seed=0)
    result = JobResult("ok")
    measure(spec, ctx, result)
    (m,) = result.measurements
    assert m.protocol == {"device": "cpu", "torch_threads": torch.get_num_threads(), "batch_size": 8}


def test_a_store_written_before_protocols_reads_them_as_not_recorded_and_is_migrated(tmp_path):
    store = Store(tmp_path)
    store.db.execute("ALTER TABLE measurements DROP COLUMN protocol")  # as a store of an earlier version
    store.db.execute("INSERT INTO jobs (key, run_id, model, family, dataset, seed, profile, status, finished) "
                     "VALUES ('k', 'r', 'a', 'f', 'd', 0, 'smoke', 'ok', 1.0)")
    store.db.execute("INSERT INTO measurements (key, metric, id, value, stderr, unit, estimator, n, higher_is_better,"
                     " status, reason, details) VALUES ('k', 'nll', 'nll', 1.5, 0.1, 'nats', 'exact', 10, 0, 'ok',"
                     " '', '{}')")
    store.close()
    old = Store(tmp_path, read_only=True)
    assert old.results()["protocol"].isna().all()
    old.close()
    (entry,) = summarise(load_results(tmp_path))
    assert entry.protocol is None and entry.mean == 1.5
    Store(tmp_path).close()  # opened for writing: the column is added, the old row keeps NULL
    db = sqlite3.connect(tmp_path / "results.sqlite")
    assert db.execute("SELECT protocol FROM measurements").fetchall() == [(None,)]
    db.close()


def test_seeds_that_recorded_different_settings_show_both():
    assert combined_protocol([None, float("nan")]) is None
    assert combined_protocol(['{"k": 64, "split": "test"}', '{"k": 64, "split": "test"}']) == {"k": 64, "split": "test"}
    mixed = combined_protocol(['{"k": 64}', '{"k": 128}', None])
    assert mixed == {"k": MIXED.join(["128", "64"])}
    assert protocol_differences({"k": 64}, mixed) == [f"protocol k 64 vs {mixed['k']}"]


def _entry(protocol, mean=1.0, stderr=0.01, model="a"):
    return Entry(model, "d", "nll", "nll", "f", "nats", "exact", False, mean, stderr, 3, [0, 1, 2], protocol=protocol)


def _compare(ref, cur, **sides):
    out = {"nll": Output("nll", "nats", tolerance=Tolerance(absolute=0.05))}
    plan = plan_speed({}, MachineSide(None))  # quality rows only here
    return compare_sides(Side({ref.key: ref}, out, name="A", **sides.get("a", {})),
                         Side({cur.key: cur}, out, name="B", **sides.get("b", {})), plan, 0.01)


def test_the_engine_refuses_two_numbers_whose_protocols_differ_and_names_the_setting():
    (row,) = _compare(_entry({"dequantisation": "uniform", "split": "test"}),
                      _entry({"dequantisation": "variational", "split": "test"}))
    assert row.verdict == Verdict.CHANGED and row.decision is None
    assert row.note == "protocol dequantisation uniform vs variational"
    # a setting only one side recorded is no evidence of a difference
    (row,) = _compare(_entry({"split": "test"}), _entry({"split": "test", "draws": 2}))
    assert row.verdict == Verdict.UNCHANGED and row.note == ""
    # a side without a protocol (made before they were stored) is compared as before, and the note says so
    (row,) = _compare(_entry(None), _entry({"split": "test"}, mean=1.2))
    assert row.verdict == Verdict.WORSE and row.note == "protocol not recorded in A"


def test_a_row_with_per_example_values_on_both_sides_is_decided_paired():
    gen = np.random.default_rng(3)
    shared = gen.normal(size=(1, 500))  # the test examples' own spread, common to both runs
    ref = PerExample("a", 1.0 + shared + 0.01 * gen.normal(size=(3, 500)), np.arange(500))
    cur = PerExample("a", 1.06 + shared + 0.01 * gen.normal(size=(3, 500)), np.arange(500))
    a = _entry({"split": "test"}, float(ref.values.mean()), float(ref.seed_means().std(ddof=1) / math.sqrt(3)))
    b = _entry({"split": "test"}, float(cur.values.mean()), float(cur.seed_means().std(ddof=1) / math.sqrt(3)))
    (row,) = _compare(a, b, a={"per_example": lambda e: ref}, b={"per_example": lambda e: cur})
    assert row.paired and row.decision.test == SignificanceTest.PAIRED and row.verdict == Verdict.WORSE
    pd_ = paired_difference(cur, ref)
    assert row.paired_difference.difference == pytest.approx(pd_.difference)
    assert row.decision.p_worse == pytest.approx(stats.t.sf(pd_.difference / pd_.stderr, pd_.df))
    # the floor still applies: a difference below it is unchanged however significant
    below = decide(a.stats, b.stats, False, Tolerance(absolute=0.1), 0.01, paired=pd_)
    assert below.verdict == Verdict.UNCHANGED and below.p_worse < 1e-6
    (row,) = _compare(a, b, a={"per_example": lambda e: None}, b={"per_example": lambda e: cur})
    assert not row.paired and row.decision.test == SignificanceTest.WELCH


def test_quick_and_full_train_three_seeds_by_default_smoke_one(tmp_path, monkeypatch, capsys):
    assert [get_profile(p).seeds for p in ("smoke", "quick", "full")] == [1, 3, 3]
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")
    for profile, extra, seeds in (("quick", [], [0, 1, 2]), ("smoke", [], [0]), ("quick", ["--seeds", "2"], [0, 1]),
                                  ("quick", ["--seed-offset", "4"], [4, 5, 6])):
        out = tmp_path / f"{profile}{len(extra)}{''.join(extra)}"
        assert main(["run", "--model", "stdnormal", "--dataset", "tiny", "--metric", "nll", "--profile", profile,
                     "--out", str(out), "--no-progress", "--no-artifacts", *extra]) == 0
        capsys.readouterr()
        store = Store(out, read_only=True)
        assert sorted(pd.unique(store.results()["seed"])) == seeds
        store.close()
