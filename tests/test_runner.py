"""The runner: failure isolation, NaN and timeouts recorded as failures, skips with reasons,
results streamed to the store, results.csv contract."""

import math

import pandas as pd
import pytest
import torch

from harness.profiles import get_profile
from harness.report import write_reports
from harness.runner import Runner
from harness.store import RESULT_COLUMNS
from tests.fake_plugins.extra import Registrations


def run(host, tmp_path, models, datasets=None, **kw):
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=kw.pop("seeds", [0]), **kw)
    store, summary = runner.run(runner.plan(models, datasets, False))
    df = store.results()
    store.close()
    return df, summary


def test_failing_fit_and_nan_leave_other_results_intact(host, tmp_path):
    df, summary = run(host, tmp_path, ["stdnormal", "boom", "nanny", "gaussian"], ["tiny"], metrics=["nll"])
    assert summary["ok"] == 2 and summary["failed"] == 2
    by_model = {m: g for m, g in df.groupby("model")}
    boom = by_model["boom"]
    assert (boom["status"] == "failed").all()
    assert "deliberate failure in fit" in boom["reason"].iloc[0]
    nanny = by_model["nanny"]
    assert (nanny["status"] == "failed").any() and "non-finite" in " ".join(nanny["reason"].dropna())
    for model in ("stdnormal", "gaussian"):
        nll = by_model[model].query("metric == 'nll'")
        assert (nll["status"] == "ok").all() and nll["value"].notna().all()


def test_nll_of_a_known_model_matches_the_analytic_value(host, tmp_path):
    """N(0, I) scored on the tiny set: the reported NLL is the mean of the analytic per-example NLL."""
    df, _ = run(host, tmp_path, ["stdnormal"], ["tiny"], metrics=["nll"])
    row = df.query("metric == 'nll'").iloc[0]
    x = host.dataset("tiny").load(None).test.x.double()
    per_example = 0.5 * (x**2).sum(1) + math.log(2 * math.pi)
    assert row["value"] == pytest.approx(float(per_example.mean()), rel=1e-6)
    assert row["stderr"] == pytest.approx(float(per_example.std() / math.sqrt(len(x))), rel=1e-4)
    assert row["estimator"] == "exact" and row["n"] == len(x) and row["unit"] == "nats"


def test_timeout_is_recorded_as_failed_and_the_run_goes_on(host, tmp_path):
    df, summary = run(host, tmp_path, ["sleepy", "stdnormal"], ["tiny"], metrics=["nll"], job_timeout=0.2)
    sleepy = df[df.model == "sleepy"]
    assert (sleepy["status"] == "failed").all() and "timed out after 0.2 s" in sleepy["reason"].iloc[0]
    assert (df[df.model == "stdnormal"]["status"] == "ok").all()


def test_incompatible_pairs_are_skipped_with_their_reason(host, tmp_path):
    """gmm refuses high-dimensional data; the pair is recorded as skipped, never attempted."""
    from harness import DataKind, DatasetSpec
    from harness.contracts import Split, Splits

    host.add_plugin(Registrations(datasets=[DatasetSpec(
        name="wide", kind=DataKind.CONTINUOUS, event_shape=(100,),
        load=lambda root: Splits(*(Split(torch.zeros(4, 100)) for _ in range(3))))]), "extra")
    df, summary = run(host, tmp_path, ["gmm"], ["wide"])
    assert summary["skipped"] == 1 and summary["ok"] == 0
    assert df["status"].tolist() == ["skipped"] and "100 dimensions" in df["reason"].iloc[0]


def test_metric_requirements_are_recorded_as_skips(host, tmp_path):
    """A metric whose requirement the model lacks is a skipped row with the reason."""
    from harness import Capability, DataKind, ModelSpec
    from tests.fake_plugins.fakes import StandardNormal

    host.add_plugin(Registrations(models=[ModelSpec(name="nolik", family="fake", factory=StandardNormal,
                                                    data_kinds=[DataKind.CONTINUOUS],
                                                    capabilities=[Capability.SAMPLE])]), "extra")
    df, _ = run(host, tmp_path, ["nolik"], ["tiny"], metrics=["nll", "sample_throughput"])
    nll = df[df.metric == "nll"].iloc[0]
    assert nll["status"] == "skipped" and "lacks log_likelihood" in nll["reason"]
    assert df[df.metric == "sample_throughput"]["status"].tolist() == ["ok"]


def test_results_csv_has_the_contract_columns(host, tmp_path):
    df, _ = run(host, tmp_path, ["stdnormal", "boom"], ["tiny"], seeds=[0, 1], metrics=["nll"])
    paths = write_reports(df, tmp_path)
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == RESULT_COLUMNS
    assert set(csv["seed"]) == {0, 1} and set(csv["status"]) == {"ok", "failed"}
    report = paths["markdown"].read_text()
    assert "## tiny" in report and "(x)" in report and "deliberate failure" in report


def test_results_are_in_the_store_as_each_job_ends(host, tmp_path):
    """The observer sees each job's rows already committed to the store."""
    import sqlite3

    from harness import hookimpl

    seen = []

    class Watcher:
        @hookimpl
        def harness_job_finished(self, run, job, result):
            db = sqlite3.connect(tmp_path / "results.sqlite")
            seen.append(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            db.close()

    host.add_plugin(Watcher(), "watcher")
    run(host, tmp_path, ["stdnormal"], ["tiny"], seeds=[0, 1, 2], metrics=["nll"])
    assert seen == [1, 2, 3]


def test_same_seed_gives_the_same_numbers(host, tmp_path):
    a, _ = run(host, tmp_path / "a", ["gmm"], ["8gaussians"], metrics=["nll"])
    b, _ = run(host, tmp_path / "b", ["gmm"], ["8gaussians"], metrics=["nll"])
    assert a.query("metric == 'nll'")["value"].tolist() == b.query("metric == 'nll'")["value"].tolist()


def test_process_pool_computes_what_in_process_computes(host, tmp_path):
    """The executor changes where jobs run, never what they compute; worker processes save the same models
    into the run directory (whole folders: no temporary one is left)."""
    from harness import artifacts
    from harness.executors import ProcessPool

    a, _ = run(host, tmp_path / "a", ["gmm", "gaussian"], ["8gaussians"], seeds=[0, 1], metrics=["nll"])
    b, summary = run(host, tmp_path / "b", ["gmm", "gaussian"], ["8gaussians"], seeds=[0, 1], metrics=["nll"],
                     executor=ProcessPool(2))
    assert summary["ok"] == 4
    key = ["model", "seed", "metric"]
    a = a.query("metric == 'nll'").sort_values(key)[key + ["value", "stderr"]].reset_index(drop=True)
    b = b.query("metric == 'nll'").sort_values(key)[key + ["value", "stderr"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert summary["artifacts"] == 4
    saved_a = sorted(p.name for p in (tmp_path / "a" / "artifacts").iterdir())
    assert sorted(p.name for p in (tmp_path / "b" / "artifacts").iterdir()) == saved_a
    for key in saved_a:
        state_a = artifacts.load_artifact(tmp_path / "a" / "artifacts" / key)[1]
        state_b = artifacts.load_artifact(tmp_path / "b" / "artifacts" / key)[1]
        assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_metric_skipped_at_run_time_is_a_skip_not_a_failure(host, tmp_path):
    """A metric raising harness.MetricSkipped (e.g. missing weights) is recorded as skipped with its reason."""
    from harness import MetricSkipped, MetricSpec, hookimpl

    def needs_weights(ctx):
        raise MetricSkipped("weights file not found; put it in datasets/weights/")

    class Plugin:
        @hookimpl
        def harness_register_metrics(self, register):
            register(MetricSpec(name="needs_weights", unit="", higher_is_better=False, compute=needs_weights))

    host.add_plugin(Plugin(), "needs-weights")
    df, summary = run(host, tmp_path, ["stdnormal"], ["tiny"], metrics=["nll", "needs_weights"])
    assert summary["ok"] == 1 and summary["failed"] == 0
    row = df[df.metric == "needs_weights"].iloc[0]
    assert row["status"] == "skipped" and "datasets/weights" in row["reason"]


def test_fit_clock_stops_when_fit_returns(host, tmp_path):
    """train_throughput reads FitContext.seconds: it must not include the metrics computed after fit."""
    import time as _time

    from harness import FitContext

    ctx = FitContext(seed=0)
    ctx.step(10)
    ctx.finish()
    frozen = ctx.seconds
    _time.sleep(0.05)
    assert ctx.seconds == frozen
    df, _ = run(host, tmp_path, ["sleepy"], ["tiny"], metrics=["train_throughput"])
    row = df[df.metric == "train_throughput"].iloc[0]
    # Sleepy fits for 0.5 s on 400 examples: 800 examples/s, never much lower.
    assert 700 < row["value"] <= 800


def test_nll_is_unconditional_and_conditional_models_add_nll_conditional(host, tmp_path):
    """nll must mean -log p(x) for every model; -log p(x|y) is reported apart as nll_conditional."""
    from harness import Capability, DataKind, DatasetSpec, LikelihoodKind, LogLikelihood, ModelSpec
    from harness.contracts import Split, Splits
    from tests.fake_plugins.fakes import StandardNormal

    class Conditional(StandardNormal):
        def log_likelihood(self, x, labels=None):
            base = super().log_likelihood(x).values
            return LogLikelihood(base if labels is None else base + 1.0, LikelihoodKind.EXACT)

    g = torch.Generator().manual_seed(0)
    make = lambda n: Split(torch.randn(n, 2, generator=g), torch.randint(0, 2, (n,), generator=g))  # noqa: E731
    labelled = DatasetSpec(name="labelled", kind=DataKind.CONTINUOUS, event_shape=(2,), num_classes=2,
                           load=lambda r: Splits(make(50), make(20), make(30)))
    cond = ModelSpec(name="cond", family="fake", factory=Conditional, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=[Capability.SAMPLE, Capability.CONDITIONAL], likelihood=LikelihoodKind.EXACT)
    host.add_plugin(Registrations(models=[cond], datasets=[labelled]), "extra")
    df, _ = run(host, tmp_path, ["cond"], ["labelled"], metrics=["nll"])
    nll = df.query("metric == 'nll'")["value"].iloc[0]
    conditional = df.query("metric == 'nll_conditional'")["value"].iloc[0]
    assert conditional == pytest.approx(nll - 1.0, abs=1e-6)


def test_different_seeds_give_different_numbers(host, tmp_path):
    """Equal numbers for one seed prove nothing if training ignores the seed: a second seed must move them."""
    df, _ = run(host, tmp_path, ["gmm"], ["8gaussians"], seeds=[0, 1], metrics=["nll"])
    values = df.query("metric == 'nll'").set_index("seed")["value"]
    assert values[0] != values[1]


def test_a_model_that_ignores_its_seed_is_caught(host, tmp_path):
    """The check above fails for a model whose fit and sampling ignore the job's seed."""
    from harness import DataKind, ModelSpec
    from tests.fake_plugins.fakes import StandardNormal

    class SeedBlind(StandardNormal):
        def sample(self, n, generator, labels=None):
            return torch.randn(n, *self.spec.event_shape, generator=torch.Generator().manual_seed(0))

    host.add_plugin(Registrations(models=[ModelSpec(name="seedblind", family="fake", factory=SeedBlind,
                                                    data_kinds=[DataKind.CONTINUOUS])]), "extra")
    df, _ = run(host, tmp_path, ["seedblind"], ["tiny"], seeds=[0, 1], metrics=["parzen_nll"])
    values = df.query("metric == 'parzen_nll'").set_index("seed")["value"]
    assert values[0] == values[1]  # what test_different_seeds_give_different_numbers would reject


def _keyed_model(tiny_width: int):
    from harness import DataKind, Hyperparameters, ModelSpec
    from tests.fake_plugins.fakes import StandardNormal

    return ModelSpec(name="keyed", family="fake", factory=StandardNormal, data_kinds=[DataKind.CONTINUOUS],
                     hyperparameters=Hyperparameters(defaults={"width": 1, "steps": 3},
                                                     rules=[({"dataset": "tiny"}, {"width": tiny_width})]))


def test_changing_one_datasets_override_leaves_the_other_job_keys_unchanged(tmp_path):
    from harness.host import get_host
    from tests.fake_plugins import fakes

    def keys(tiny_width):
        h = get_host()
        h.add_plugin(fakes, "fakes")
        h.add_plugin(Registrations(models=[_keyed_model(tiny_width)]), "extra")
        jobs = Runner(h, get_profile("smoke"), tmp_path, seeds=[0]).plan(["keyed"], ["tiny", "8gaussians"], False)
        return {j.dataset: (j.key, j.hparams) for j in jobs}

    before, after = keys(2), keys(3)
    assert before["8gaussians"] == after["8gaussians"]
    assert before["tiny"][0] != after["tiny"][0]
    assert before["tiny"][1] == {"steps": 3, "width": 2} and after["tiny"][1] == {"steps": 3, "width": 3}
    assert before["8gaussians"][1] == {"steps": 3, "width": 1}


def test_process_pool_workers_see_plugins_added_at_run_time(host, tmp_path):
    """A plugin the parent added in code (not installed) must reach the pool's workers."""
    from harness import DataKind, ModelSpec
    from harness.executors import ProcessPool
    from tests.fake_plugins.fakes import StandardNormal

    late = ModelSpec(name="late", family="fake", factory=StandardNormal, data_kinds=[DataKind.CONTINUOUS])
    host.add_plugin(Registrations(models=[late]), "late-plugin")
    df, summary = run(host, tmp_path, ["late", "stdnormal"], ["tiny"], metrics=["nll"], executor=ProcessPool(2))
    assert summary["ok"] == 2, df[["model", "reason"]]
