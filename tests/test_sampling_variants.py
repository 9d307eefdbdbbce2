"""Sampling variants (Model.sampling_variants): several sampler settings of one fitted model measured in
one job. The runner measures each variant with the metrics that need samples and not the likelihood,
tags the identity with ``[label]``, and the report shows them in a table of their own."""

import math

import pytest
import torch

from harness import (Capability, DataKind, LikelihoodKind, LogLikelihood, Measurement, MetricSpec, Model, ModelSpec,
                     Output)
from harness.contracts import check_variant_label, split_variant, variant_identity
from harness.profiles import get_profile
from harness.report import comparison_tables
from harness.report.markdown import markdown_page
from harness.report.summarised import SummarisedRun
from harness.runner import Runner
from tests.fake_plugins.extra import Registrations


class ScaledNormal(Model):
    """N(0, s^2 I) with s = 1; its variants sample with other scales (and the same likelihood)."""

    def __init__(self, spec, hparams, scale=1.0):
        self.spec, self.hparams, self.scale = spec, hparams, scale

    def fit(self, train, val, ctx):
        ctx.set_total_steps(1)
        ctx.step(len(train))

    def sample(self, n, generator, labels=None):
        return self.scale * torch.randn(n, *self.spec.event_shape, generator=generator)

    def log_likelihood(self, x, labels=None):
        x = x.reshape(x.shape[0], -1)
        return LogLikelihood(-0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi), LikelihoodKind.EXACT)

    def sampling_variants(self):
        return {"scale=1": self, "scale=2": ScaledNormal(self.spec, self.hparams, 2.0),
                "scale=0.5": ScaledNormal(self.spec, self.hparams, 0.5)}


def sample_std(ctx):
    s = ctx.model.sample(4000, ctx.generator(7))
    return [Measurement("sample_std", float(s.std()), n=4000)]


def broken_for_wide(ctx):
    if ctx.model.scale > 1:
        raise RuntimeError("too wide")
    return [Measurement("narrow", 1.0, n=1)]


def loglik_mean(ctx):
    return [Measurement("mean_loglik", float(ctx.model.log_likelihood(ctx.dataset.test.x).values.mean()),
                        estimator="exact")]


METRICS = [
    MetricSpec("sample_std", sample_std, [Output("sample_std", "", estimator="statistic")],
               requires=[Capability.SAMPLE]),
    MetricSpec("narrow", broken_for_wide, [Output("narrow", "", estimator="statistic")],
               requires=[Capability.SAMPLE]),
    MetricSpec("mean_loglik", loglik_mean, [Output("mean_loglik", "nats", True)],
               requires=[Capability.LOG_LIKELIHOOD]),
]


@pytest.fixture
def variant_host(host):
    spec = ModelSpec(name="scaled", family="fake", factory=ScaledNormal, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT, default_datasets=["tiny"])
    host.add_plugin(Registrations(models=[spec], metrics=METRICS), "variants-test")
    return host


def run(host, tmp_path, metrics):
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0], metrics=metrics)
    store, summary = runner.run(runner.plan(["scaled"], ["tiny"], False))
    df = store.results()
    store.close()
    return df, summary


def test_each_variant_is_measured_by_the_sample_metrics_with_its_label_in_the_identity(variant_host, tmp_path):
    df, summary = run(variant_host, tmp_path, ["sample_std", "mean_loglik"])
    ok = df[df.status == "ok"].set_index("id")
    # the model's own rows, then one row per variant that is not the model itself
    assert set(ok.index) == {"sample_std", "sample_std[scale=2]", "sample_std[scale=0.5]", "mean_loglik"}
    for ident, scale in (("sample_std", 1.0), ("sample_std[scale=2]", 2.0), ("sample_std[scale=0.5]", 0.5)):
        assert ok.loc[ident, "value"] == pytest.approx(scale, rel=0.05)  # the variant's own sampler
        assert ok.loc[ident, "metric"] == "sample_std"
    import json

    assert json.loads(ok.loc["sample_std[scale=2]", "details"])["variant"] == "scale=2"
    job = json.loads(df["job_details"].iloc[0])
    assert job["sampling_label"] == "scale=1" and job["sampling_variants"] == ["scale=2", "scale=0.5"]
    assert "sample_std[scale=2]" in job["metric_seconds"]
    assert summary["ok"] == 1


def test_a_variant_whose_metric_fails_fails_the_job_and_keeps_the_other_numbers(variant_host, tmp_path):
    df, summary = run(variant_host, tmp_path, ["narrow", "sample_std"])
    failed = df[df.status == "failed"]
    assert list(failed["metric"]) == ["narrow[scale=2]"] and "too wide" in failed["reason"].iloc[0]
    ok = set(df[df.status == "ok"]["id"])
    assert {"narrow", "narrow[scale=0.5]", "sample_std[scale=2]"} <= ok
    assert summary["failed"] == 1


def test_bind_builds_the_identity_and_labels_are_checked():
    spec = MetricSpec("fid", lambda ctx: [], [Output("fid", "", estimator="statistic", sample_count_in_id=True)],
                      requires=[Capability.SAMPLE])
    m = spec.bind(Measurement("fid", 1.0, n=2000, variant="steps=10"))
    assert m.id == "fid@2000[steps=10]" and m.details["variant"] == "steps=10"
    assert spec.bind(Measurement("fid", 1.0, n=2000)).id == "fid@2000"
    assert split_variant("fid@2000[steps=10]") == ("fid@2000", "steps=10")
    assert split_variant("fid@2000") == ("fid@2000", None)
    assert variant_identity("nll", "t=0.5") == "nll[t=0.5]"
    for bad in ("", "a[b]", None, 3):
        with pytest.raises(ValueError):
            check_variant_label(bad)
    assert spec.measures_samples_only
    assert not METRICS[2].measures_samples_only


def test_the_report_shows_variants_in_their_own_table(variant_host, tmp_path):
    df, _ = run(variant_host, tmp_path, ["sample_std", "mean_loglik"])
    main = comparison_tables(df)["tiny"]
    assert not [c for c in main.columns if "[scale=" in c]  # variants stay out of the main table
    report = SummarisedRun(df, tmp_path)
    table = report.sections[0].variants
    assert table.models == ["scaled · scale=0.5", "scaled · scale=1 (as fitted)", "scaled · scale=2"]
    assert [c.label for c in table.columns] == ["sample_std"]
    assert table.cell("scaled · scale=2", "sample_std").mean == pytest.approx(2.0, rel=0.05)
    assert table.cell("scaled · scale=1 (as fitted)", "sample_std").mean == pytest.approx(1.0, rel=0.05)
    text = markdown_page(report)
    assert "Sampler settings on tiny" in text and "scaled · scale=1 (as fitted)" in text


def test_models_without_variants_are_measured_once(host, tmp_path):
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0], metrics=["nll"])
    store, _ = runner.run(runner.plan(["stdnormal"], ["tiny"], False))
    df = store.results()
    store.close()
    assert list(df["id"]) == ["nll"]
    assert all(section.variants is None for section in SummarisedRun(df, tmp_path).sections)
