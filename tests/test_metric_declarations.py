"""Every built-in metric plugin (harness_plugins/metrics: likelihood, samples, truth, fidelity, memorisation,
speed) emits only the outputs it declares, consistently with the declaration (MetricSpec.bind succeeds, as in the runner),
and every declared output is emitted somewhere: computed on a small fitted model on the datasets
that call for each branch (an image dataset with labels and a classifier extractor; a 2-D set with a
known entropy and known modes), for a likelihood model and a sample-only one, and the speed metrics
once more on a (faked) CUDA device for the GPU-only outputs."""

from __future__ import annotations

import math

import torch

from harness import Capability, DataKind, LikelihoodKind, LogLikelihood, Model, ModelSpec
from harness.contracts import FitContext, MetricContext, MetricSkipped
from harness.profiles import get_profile
from harness_plugins.metrics import fidelity, likelihood, memorisation, samples, speed, truth
from tests.test_memorisation import datasets  # noqa: F401  (a fixture: digits and 8gaussians, loaded once)
from tests.test_speed_metrics import fake_cuda  # noqa: F401  (a fixture)

PLUGINS = (likelihood, samples, truth, fidelity, memorisation, speed)


def _specs() -> list:
    found = []
    for plugin in PLUGINS:
        plugin.harness_register_metrics(found.append)
    return found


class Factorised(Model):
    """A small model fitted in closed form, class-conditional where the data has labels:
    per-dimension Gaussians for continuous data, per-pixel categorical levels for discrete data.
    Exact log-likelihood (marginal over classes when no label is given)."""

    def __init__(self, spec, hparams=None):
        self.spec = spec

    def fit(self, train, val, ctx):
        x = train.x.reshape(len(train), -1).double()
        y = train.y if train.y is not None else torch.zeros(len(train), dtype=torch.long)
        self.classes = int(y.max()) + 1
        self.log_prior = torch.log(torch.bincount(y, minlength=self.classes).double() / len(y))
        if self.spec.kind is DataKind.CONTINUOUS:
            self.mean = torch.stack([x[y == c].mean(0) for c in range(self.classes)])
            self.std = torch.stack([x[y == c].std(0) for c in range(self.classes)]).clamp_min(1e-3)
        else:
            levels = int(self.spec.levels)
            counts = torch.stack([torch.nn.functional.one_hot(x[y == c].long(), levels).sum(0)
                                  for c in range(self.classes)]).double()  # (C, D, K)
            self.log_p = torch.log((counts + 1) / (counts + 1).sum(-1, keepdim=True))
        ctx.step(len(train))

    def _per_class(self, x):  # (n, C) log p(x | c)
        x = x.reshape(x.shape[0], -1).double()
        if self.spec.kind is DataKind.CONTINUOUS:
            z = (x[:, None] - self.mean[None]) / self.std[None]
            return (-0.5 * z**2 - torch.log(self.std[None]) - 0.5 * math.log(2 * math.pi)).sum(-1)
        idx = x.long()[:, None, :, None].expand(-1, self.classes, -1, 1)
        return self.log_p[None].expand(x.shape[0], -1, -1, -1).gather(-1, idx)[..., 0].sum(-1)

    def log_likelihood(self, x, labels=None):
        per_class = self._per_class(x)
        if labels is not None:
            values = per_class.gather(1, labels.long()[:, None])[:, 0]
        else:
            values = torch.logsumexp(per_class + self.log_prior[None], 1)
        return LogLikelihood(values.float(), LikelihoodKind.EXACT)

    def elbo(self, x, labels=None):
        """A lower bound on log p(x) (here the exact value), as a model of the vae family gives it."""
        return self.log_likelihood(x, labels).values

    def sample(self, n, generator, labels=None):
        if labels is None:
            labels = torch.multinomial(self.log_prior.exp(), n, replacement=True, generator=generator)
        labels = labels.long().cpu()
        if self.spec.kind is DataKind.CONTINUOUS:
            z = torch.randn(n, self.mean.shape[1], generator=generator, dtype=torch.float64)
            out = self.mean[labels] + self.std[labels] * z
        else:
            probs = self.log_p[labels].exp()  # (n, D, K)
            out = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).reshape(n, -1).double()
        return out.float().reshape(n, *self.spec.event_shape)


def _model_spec(name: str, with_likelihood: bool, family: str = "test") -> ModelSpec:
    return ModelSpec(name=name, family=family, factory=Factorised,
                     data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
                     capabilities=[Capability.SAMPLE, Capability.CONDITIONAL],
                     likelihood=LikelihoodKind.EXACT if with_likelihood else None)


def _fitted(dataset) -> tuple:
    model = Factorised(dataset.spec)
    fit = FitContext("cpu", seed=0)
    model.fit(dataset.train, dataset.val, fit)
    fit.finish()
    return model, fit


def _emit(spec, ctx) -> list:
    """The metric's measurements bound to its declaration: what the runner stores."""
    if spec.incompatibility(ctx.model_spec, ctx.dataset.spec) is not None:
        return []
    return [spec.bind(m) for m in spec.compute(ctx)]


def _context(model, fit, model_spec, dataset, device="cpu", run_cache=None) -> MetricContext:
    from harness.host import get_host

    profile = get_profile("smoke")
    return MetricContext(model=model, model_spec=model_spec, dataset=dataset, profile=profile,
                         device=torch.device(device), seed=0, fit=fit,
                         feature_extractors=get_host().registry.feature_extractors,
                         run_cache={} if run_cache is None else run_cache)


def test_every_metric_plugin_emits_only_and_all_its_declared_outputs(datasets, fake_cuda):  # noqa: F811
    specs = _specs()
    declared = {o.name for spec in specs for o in spec.outputs}
    emitted: dict = {}
    run_cache: dict = {}
    for dataset in datasets.values():
        model, fit = _fitted(dataset)
        for model_spec in (_model_spec("exact", True), _model_spec("sampler", False), _model_spec("vae", True, "vae")):
            ctx = _context(model, fit, model_spec, dataset, run_cache=run_cache)
            for spec in specs:
                if spec.name == "gpu_sample_throughput":
                    continue  # on a CPU run it is skipped at run time; measured below on "cuda"
                for m in _emit(spec, ctx):
                    assert m.unit is not None and m.estimator is not None and m.higher_is_better is not None
                    assert m.finite, (spec.name, m.metric, m.value)
                    emitted.setdefault(m.metric, set()).add(m.id)
    # the GPU branches (torch.cuda faked): gpu_sample_throughput and achieved_flops_fraction
    model, fit = _fitted(datasets["8gaussians"])
    ctx = _context(model, fit, _model_spec("exact", True), datasets["8gaussians"], device="cuda")
    for spec in speed.metric_specs():
        for m in _emit(spec, ctx):
            emitted.setdefault(m.metric, set()).add(m.id)
    assert set(emitted) == declared
    # the sample count is part of the identity exactly where declared
    n = 500  # what the sample metrics declare for smoke
    for spec in specs:
        for out in spec.outputs:
            assert emitted[out.name] == ({f"{out.name}@{n}"} if out.sample_count_in_id else {out.name})


def test_sizes_per_profile_are_declared_by_the_metrics_and_keep_the_profiles_values():
    """The sample count (the profiles' fidelity_samples before the metrics declared it) is each sample
    metric's declaration; every declared table knows the three profiles; the profiles keep only
    harness-wide knobs."""
    import dataclasses

    from harness.profiles import PROFILES, Profile

    sample_metrics = {"fid", "kid", "precision", "recall", "density", "coverage", "parzen_nll", "mode_coverage",
                      "conditional_accuracy", "sample_xent_gap", "copying"}
    assert {spec.name for spec in _specs() if spec.sizes and "samples" in spec.sizes.of("smoke")} == sample_metrics
    for spec in _specs():
        if spec.sizes is not None:
            assert set(spec.sizes.profiles) >= set(PROFILES), spec.name
        if spec.name in sample_metrics:
            assert [spec.sizes.of(p)["samples"] for p in ("smoke", "quick", "full")] == [500, 2000, 10000]
    assert [f.name for f in dataclasses.fields(Profile)] == ["name", "job_timeout_s", "eval_examples", "sample_batch",
                                                              "description", "seeds"]


def test_declarations_keep_todays_units_and_directions_and_order_the_tables():
    outputs = {o.name: o for spec in _specs() for o in spec.outputs}
    units = {"nll": "nats", "bpd": "bits/dim", "nll_gap": "nats", "nll_conditional": "nats", "elbo_nll": "nats",
             "parzen_nll": "nats",
             "modes_covered": "modes", "high_quality_share": "fraction", "conditional_accuracy": "fraction",
             "fid": "", "kid": "", "precision": "fraction", "recall": "fraction", "density": "",
             "coverage": "fraction", "copying_ct": "z", "authenticity": "fraction", "copy_rate": "fraction",
             "sample_xent_gap": "nats", "sample_throughput": "samples/s", "sample_latency_p50": "ms", "sample_latency_p95": "ms",
             "eval_throughput": "examples/s", "train_throughput": "examples/s", "peak_memory": "bytes",
             "flops_per_sample": "FLOP/sample", "flops_per_evaluation": "FLOP/example", "achieved_flops": "FLOP/s",
             "achieved_flops_fraction": "fraction of peak", "gpu_sample_throughput": "samples/s"}
    higher = {"modes_covered", "high_quality_share", "conditional_accuracy", "precision", "recall", "density",
              "coverage", "copying_ct", "authenticity", "sample_throughput", "eval_throughput", "train_throughput",
              "achieved_flops", "achieved_flops_fraction", "gpu_sample_throughput"}
    assert {name: o.unit for name, o in outputs.items()} == units
    assert {name for name, o in outputs.items() if o.higher_is_better} == higher
    quality = [o for o in outputs.values() if o.kind == "quality"]
    speed_outputs = [o for o in outputs.values() if o.kind == "speed"]
    assert max(o.order for o in quality) < min(o.order for o in speed_outputs)  # speed columns after quality
    head = sorted((o for o in quality if o.order < 100), key=lambda o: o.order)
    assert [o.name for o in head] == ["nll", "bpd", "nll_gap", "sample_xent_gap", "elbo_nll", "parzen_nll", "fid", "kid",
                                      "precision", "density", "recall", "coverage", "copying_ct", "authenticity",
                                      "copy_rate"]
    assert len({o.order for o in outputs.values()}) == len(outputs)
    assert all(o.estimator == "measured" and o.tolerance.ratio for o in speed_outputs)
    assert all(not o.tolerance.ratio for o in quality)
    assert {o.name for o in outputs.values() if o.headline} == {"nll", "bpd", "fid", "precision", "recall",
                                                                "sample_throughput"}
    assert {o.name for o in outputs.values() if o.integer} == {"modes_covered"}


def test_an_undeclared_output_fails_the_metric_in_the_runner(tmp_path, monkeypatch):
    """The runner binds every measurement: a speed metric emitting a name it does not declare is
    recorded as failed, with the reason, and nothing of it is stored."""
    from harness import Measurement
    from harness.host import get_host
    from harness.runner import Runner

    def rogue(ctx):
        return [Measurement("peak_memory", 1.0, n=1), Measurement("peak_rss", 2.0, n=1)]

    host = get_host()
    spec = host.registry.metrics["peak_memory"]
    monkeypatch.setattr(spec, "compute", rogue)
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0], metrics=["peak_memory"])
    store, summary = runner.run(runner.plan(["gaussian"], ["8gaussians"], False))
    df = store.results()
    store.close()
    assert summary["failed"] == 1
    assert "peak_rss" in " ".join(str(r) for r in df["reason"].dropna()) and "peak_rss" not in set(df["metric"])


def test_metric_skipped_is_what_unmeasurable_memory_raises():
    from harness_plugins.metrics.speed.memory import MemoryUnmeasurable

    assert issubclass(MemoryUnmeasurable, MetricSkipped)
