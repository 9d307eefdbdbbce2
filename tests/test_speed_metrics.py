"""Speed metrics: FLOPs against a hand count, exact relations between the metrics, labels for
conditional models, one set of calls per job, the CUDA branches on CPU (torch.cuda replaced by a
stand-in), GPU variants skipped with their reason, and finite values through the runner.

Nothing here asserts how fast anything runs."""

import math
import time

import pytest
import torch

from harness import Capability, DataKind, DatasetSpec, LikelihoodKind, LogLikelihood, Model, ModelSpec
from harness.contracts import Dataset, FitContext, MetricContext, Split, Splits
from harness.profiles import get_profile
from harness_plugins.metrics import speed
from harness_plugins.metrics.speed import budgets, datasheet, flops, instrumented, throughput
from tests.test_timing import FakeCuda, install_fake_cuda

D_IN, D_OUT, D_EXTRA = 6, 5, 3


class LinearToy(Model):
    """sample(n): z (n, D_IN) -> Linear(D_IN, D_OUT) -> @ M (D_OUT, D_EXTRA); counted by hand as
    2 D_IN D_OUT + 2 D_OUT D_EXTRA FLOPs per sample (the bias add is elementwise, not counted).
    log_likelihood(x): x (n, D_EXTRA) @ P (D_EXTRA, D_EXTRA): 2 D_EXTRA^2 per example.
    Records every call's batch size and labels, and the inputs of log_likelihood."""

    def __init__(self, spec=None, hparams=None):
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(D_IN, D_OUT)
        self.M = torch.randn(D_OUT, D_EXTRA)
        self.P = torch.randn(D_EXTRA, D_EXTRA)
        self.sample_calls, self.ll_calls, self.ll_inputs = [], [], []

    def fit(self, train, val, ctx):
        ctx.step(len(train))

    def sample(self, n, generator, labels=None):
        self.sample_calls.append((n, labels))
        z = torch.randn(n, D_IN, generator=generator)
        return torch.mm(self.linear(z), self.M)

    def log_likelihood(self, x, labels=None):
        self.ll_calls.append((x.shape[0], labels))
        self.ll_inputs.append(x)
        return LogLikelihood(-(torch.mm(x, self.P) ** 2).sum(1), LikelihoodKind.EXACT)


SAMPLE_FLOPS = 2 * D_IN * D_OUT + 2 * D_OUT * D_EXTRA
EVAL_FLOPS = 2 * D_EXTRA * D_EXTRA


def _dataset(num_classes=0, n_test=50):
    g = torch.Generator().manual_seed(1)

    def split(n):
        y = torch.randint(num_classes, (n,), generator=g) if num_classes else None
        return Split(torch.randn(n, D_EXTRA, generator=g), y)

    spec = DatasetSpec(name="toy3", kind=DataKind.CONTINUOUS, event_shape=(D_EXTRA,), num_classes=num_classes,
                       load=lambda root: Splits(split(100), split(20), split(n_test)))
    return Dataset(spec, spec.load(None), provenance="test")


def _context(model=None, conditional=False, device="cpu", fit=None, run_cache=None, n_test=50):
    caps = [Capability.SAMPLE] + ([Capability.CONDITIONAL] if conditional else [])
    model = model or LinearToy()
    spec = ModelSpec(name="linear-toy", family="toy", factory=LinearToy, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=caps, likelihood=LikelihoodKind.EXACT)
    return MetricContext(model=model, model_spec=spec, dataset=_dataset(4 if conditional else 0, n_test),
                         profile=get_profile("smoke"), device=torch.device(device), seed=0, fit=fit,
                         run_cache={} if run_cache is None else run_cache)


SPEC_OF = {name: spec for spec in speed.metric_specs() for name in spec.output_names}


def _bind(rows):
    """Measurements bound to their declarations, as the runner binds them (an undeclared name or a
    contradicting unit or direction raises)."""
    return [SPEC_OF[m.metric].bind(m) for m in rows]


def _by_name(rows):
    return {m.metric: m for m in _bind(rows)}


# --------------------------------------------------------------------------- FLOPs


def test_flops_per_sample_equals_the_hand_count():
    ctx = _context()
    (m,) = _bind(instrumented.compute_flops_per_sample(ctx))
    assert m.value == SAMPLE_FLOPS
    assert m.details["total_flops"] == SAMPLE_FLOPS * m.details["batch_size"]


def test_flops_per_evaluation_equals_the_hand_count():
    (m,) = _bind(instrumented.compute_flops_per_evaluation(_context()))
    assert m.value == EVAL_FLOPS and m.details["batch_size"] == 50  # the whole (50-example) test split


def test_count_flops_of_a_single_linear_layer():
    layer = torch.nn.Linear(7, 11)
    total, by_op = flops.count_flops(lambda: layer(torch.randn(4, 7)))
    assert total == 4 * 2 * 7 * 11 and sum(by_op.values()) == total


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.linear = torch.nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1)
        q = self.linear(h).reshape(-1, 2, 5)
        return torch.bmm(q, q.transpose(1, 2)) + torch.nn.functional.scaled_dot_product_attention(q, q, q).sum()


def test_count_flops_agrees_with_torch_flop_counter_mode():
    """The harness's counter applies FlopCounterMode's formulas; on ops both know, the totals agree,
    forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    net, x = SmallNet(), torch.randn(3, 2, 6, 6)

    def forward_backward():
        net(x).sum().backward()

    mode = FlopCounterMode(display=False)
    with mode:
        forward_backward()
    total, by_op = flops.count_flops(forward_backward)
    assert total == mode.get_total_flops() > 0
    assert by_op == {str(op): n for op, n in mode.get_flop_counts()["Global"].items()}


def test_matrix_vector_products_and_triangular_solves_are_counted():
    """torch's counter skips these; the harness adds 2 m n for (add)mv and n^2 per right-hand side."""
    a, v = torch.randn(5, 7), torch.randn(7)
    assert flops.count_flops(lambda: torch.mv(a, v))[0] == 2 * 5 * 7
    assert flops.count_flops(lambda: torch.addmv(torch.randn(5), a, v))[0] == 2 * 5 * 7
    lower = torch.eye(4) + torch.randn(4, 4).tril(-1)
    b = torch.randn(3, 4, 6)  # a batch of 3 systems with 6 right-hand sides each
    assert flops.count_flops(lambda: torch.linalg.solve_triangular(lower, b, upper=False))[0] == 3 * 6 * 4 * 4


def test_achieved_flops_is_flops_per_sample_times_sample_throughput():
    ctx = _context()
    rows = _by_name(instrumented.compute_achieved_flops(ctx))
    (rate,) = _bind(throughput.compute_sample_throughput(ctx))
    achieved = rows["achieved_flops"]
    assert achieved.value == pytest.approx(SAMPLE_FLOPS * rate.value, rel=1e-12)
    assert achieved.stderr == pytest.approx(SAMPLE_FLOPS * rate.stderr, rel=1e-12)
    assert "achieved_flops_fraction" not in rows and "CPU" in achieved.details["peak_unknown"]


# --------------------------------------------------------------------------- each metric on a toy


def test_sample_latency_reports_p50_and_p95_in_milliseconds():
    ctx = _context()
    rows = _by_name(throughput.compute_sample_latency(ctx))
    p50, p95 = rows["sample_latency_p50"], rows["sample_latency_p95"]
    assert p50.unit == p95.unit == "ms" and p50.n == p95.n >= 5
    assert 0 < p50.value <= p95.value and p50.details["p95"] == pytest.approx(p95.value)
    one_sample_calls = [n for n, _ in ctx.model.sample_calls if n == 1]
    assert len(one_sample_calls) >= p50.n * p50.details["calls_per_repeat"]


def test_throughput_rows_carry_their_spread_and_device():
    ctx = _context()
    (m,) = _bind(throughput.compute_sample_throughput(ctx))
    d = m.details
    assert m.estimator == "measured" and m.unit == "samples/s" and m.higher_is_better
    assert d["p05"] <= d["p25"] <= m.value <= d["p75"] <= d["p95"]
    assert d["device"] == "cpu" and d["timer"] == "perf_counter" and d["batch_size"] == 256
    assert m.n == d["repeats"] >= budgets.SIZES.of(ctx.profile)["min_repeats"] and math.isfinite(m.stderr)


def test_conditional_models_get_labels_for_sampling_and_evaluation():
    ctx = _context(conditional=True)
    throughput.compute_sample_throughput(ctx)
    throughput.compute_eval_throughput(ctx)
    for n, labels in ctx.model.sample_calls:
        assert labels is not None and labels.shape == (n,) and 0 <= int(labels.min()) and int(labels.max()) < 4
    for n, labels in ctx.model.ll_calls:
        assert torch.equal(labels, ctx.evaluation_split(n).y)


def test_evaluation_calls_score_the_evaluation_split():
    """Every evaluation call at batch b scores ctx.evaluation_split(b), the examples the likelihood
    metrics score (a fixed permutation's first b, not the first b rows), whole at the full batch."""
    ctx = _context(n_test=300)
    (m,) = _bind(throughput.compute_eval_throughput(ctx))
    assert m.details["batch_size"] == 256 and m.details["split"] == "test"
    sizes = {x.shape[0] for x in ctx.model.ll_inputs}
    assert {1, 256} <= sizes
    for x in ctx.model.ll_inputs:
        assert torch.equal(x, ctx.evaluation_split(x.shape[0]).x)
    assert not torch.equal(ctx.evaluation_split(256).x, ctx.dataset.test.x[:256])


def test_unconditional_models_get_no_labels():
    ctx = _context()
    throughput.compute_sample_throughput(ctx)
    assert all(labels is None for _, labels in ctx.model.sample_calls)


class FixedFit(FitContext):
    """A fit whose duration is fixed, so the expected throughput is exact."""

    @property
    def seconds(self):
        return 2.0


def test_train_throughput_is_examples_over_fit_seconds():
    fit = FixedFit()
    for _ in range(10):
        fit.step(32)
    (m,) = _bind(throughput.compute_train_throughput(_context(fit=fit)))
    assert m.value == pytest.approx(320 / 2.0) and m.details["steps"] == 10 and m.details["steps_per_second"] == 5.0


def test_train_throughput_is_skipped_for_a_fit_that_reports_no_steps():
    """Nothing to divide the fit's time into (an object measured as built, a fit of the user's own code
    that does not report its steps): skipped with the reason, not a number made up."""
    from harness import MetricSkipped

    with pytest.raises(MetricSkipped, match="no training examples through ctx.step"):
        throughput.compute_train_throughput(_context(fit=FixedFit()))


class Allocating(LinearToy):
    """LinearToy whose sample(n) also fills a scratch tensor of ``scratch_bytes`` and frees it again."""

    def __init__(self, scratch_bytes):
        super().__init__()
        self.scratch_bytes = scratch_bytes

    def sample(self, n, generator, labels=None):
        scratch = torch.ones(self.scratch_bytes // 4)
        return super().sample(n, generator, labels) + scratch[0]


MIB = 1024 * 1024
# What LinearToy's sampling itself holds at batch 256 (z, the linear layer's output and the product:
# (6 + 5 + 3) floats a sample, 14 KiB) plus torch's small temporaries: well under 64 KiB.
TOY_SLACK = 64 * 1024


def test_peak_memory_is_what_the_sampling_call_allocates():
    """Two models whose sampling allocates 8 MiB and 40 MiB of scratch: peak_memory matches each
    known allocation within the toy's own few KiB, and they differ by the difference of the two."""
    before = torch.ones(64 * MIB // 4)  # held by the process before the jobs run: in neither figure
    run_cache = {}
    figures = {}
    for scratch in (8 * MIB, 40 * MIB):
        ctx = _context(model=Allocating(scratch), run_cache=run_cache)
        (m,) = _bind(instrumented.compute_peak_memory(ctx))
        assert m.unit == "bytes" and m.estimator == "measured" and not m.higher_is_better
        assert m.details["batch_size"] == 256 and "profiler" in m.details["source"]
        assert "process" not in m.details["scope"] and "above what was allocated before" in m.details["scope"]
        assert scratch <= m.value <= scratch + TOY_SLACK
        assert m.details["allocated_bytes"] >= scratch and m.details["per_sample_bytes"] == m.value / 256
        figures[scratch] = m.value
    assert figures[40 * MIB] - figures[8 * MIB] == pytest.approx(32 * MIB, abs=TOY_SLACK)
    plain = _bind(instrumented.compute_peak_memory(_context(run_cache=run_cache)))[0].value
    assert 256 * D_EXTRA * 4 <= plain <= TOY_SLACK  # at least the samples it returns
    del before


def test_peak_memory_is_skipped_where_it_cannot_be_measured_and_flops_are_still_counted():
    from harness import MetricSkipped

    ctx = _context(device="meta")  # a device with no allocator statistics (the toy computes on CPU)
    with pytest.raises(MetricSkipped, match="no allocator statistic for meta"):
        instrumented.compute_peak_memory(ctx)
    (m,) = _bind(instrumented.compute_flops_per_sample(ctx))
    assert m.value == SAMPLE_FLOPS


def test_the_metrics_of_a_job_share_their_calls():
    """A second pass over every speed metric of the same job makes no new model calls, and the FLOP
    counter runs once."""
    ctx = _context(fit=FixedFit())
    ctx.fit.step(10)
    computes = [spec.compute for spec in speed.metric_specs() if spec.name != "gpu_sample_throughput"]
    first = [m for compute in computes for m in compute(ctx)]
    calls = (len(ctx.model.sample_calls), len(ctx.model.ll_calls))
    second = [m for compute in computes for m in compute(ctx)]
    assert (len(ctx.model.sample_calls), len(ctx.model.ll_calls)) == calls
    assert [(m.metric, m.value) for m in first] == [(m.metric, m.value) for m in second]
    cache = ctx.run_cache["speed_metrics"][ctx.model]
    assert sum(1 for key in cache if "instrumented" in key) == 2  # one sampling and one evaluation call


class Slow(LinearToy):
    """Sampling and evaluation that take at least 1 ms per item (a sleep: never shorter, on any
    machine), so a call at the smoke profile's batch of 256 takes at least 0.256 s, over its longest
    allowed call (0.075 s, or four one-item calls of about 1 ms)."""

    def sample(self, n, generator, labels=None):
        time.sleep(1e-3 * n)
        return super().sample(n, generator, labels)

    def log_likelihood(self, x, labels=None):
        time.sleep(1e-3 * x.shape[0])
        return super().log_likelihood(x, labels)


def test_a_slow_model_is_timed_at_a_smaller_batch_and_says_so():
    ctx = _context(model=Slow(), n_test=300)
    budget = budgets.throughput_budget(ctx.profile)
    assert 0.256 > budget.max_call_seconds
    rows = {"sample_throughput": _bind(throughput.compute_sample_throughput(ctx))[0],
            "eval_throughput": _bind(throughput.compute_eval_throughput(ctx))[0]}
    for what, m in zip(("sample", "evaluate"), rows.values()):
        choice = throughput.batch_choice(ctx, what, None, 256, budget)  # the job's cached choice
        assert choice.reduced and choice.batch < 256
        assert m.details["batch_size"] == choice.batch and m.details["requested_batch_size"] == 256
        assert m.details["batch_note"].startswith("a call at batch 256 was predicted to take longer")
    # calls that fit keep the requested batch, and no note
    (fast,) = _bind(throughput.compute_sample_throughput(_context()))
    assert fast.details["batch_size"] == 256 and "batch_note" not in fast.details


# --------------------------------------------------------------------------- budgets per profile


def test_budgets_per_profile_are_declared_by_the_metrics():
    """The budgets of every profile, as the speed metrics declare them (the values the profiles carried
    before the metrics declared them), and every metric that times calls declares them."""
    from harness.timing import Budget

    expected = {"smoke": (0.12, 0.3, 25, 3, 0.02, 0.05, 0.125, 30, 5),
                "quick": (0.25, 2.0, 50, 5, 0.01, 0.1, 0.75, 100, 5),
                "full": (5.0, 12.5, 200, 20, 0.005, 2.0, 5.0, 500, 20)}
    for profile, (tp, tp_limit, tp_most, least, precision, lat, lat_limit, lat_most, lat_least) in expected.items():
        assert budgets.throughput_budget(get_profile(profile)) == Budget(tp, min_repeats=least, max_repeats=tp_most,
                                                                          max_seconds=tp_limit, precision=precision)
        assert budgets.latency_budget(profile) == Budget(lat, min_repeats=lat_least, max_repeats=lat_most,
                                                         min_block_seconds=0.0, max_seconds=lat_limit)
    assert budgets.throughput_budget("quick", scale=2.0).limit == 4.0
    declared = {spec.name for spec in speed.metric_specs() if spec.sizes is budgets.SIZES}
    assert declared == {spec.name for spec in speed.metric_specs()} - {"train_throughput"}


def test_a_profile_the_budgets_do_not_know_is_an_error_naming_it():
    from harness import UserError

    with pytest.raises(UserError, match=r"smoke, quick, full, not for 'huge'"):
        budgets.throughput_budget("huge")


# --------------------------------------------------------------------------- peak FLOP/s table


@pytest.mark.parametrize("name, dtype, flops", [
    ("NVIDIA H100 80GB HBM3", torch.float32, 67e12),
    ("NVIDIA H100 PCIe", torch.float32, 51e12),
    ("NVIDIA H100 NVL", torch.bfloat16, 835.5e12),
    ("NVIDIA H200", torch.bfloat16, 989.5e12),
    ("NVIDIA A100-SXM4-80GB", torch.float16, 312e12),
    ("NVIDIA L4", torch.float64, None),
    ("Some Future GPU", torch.float32, None),
])
def test_peak_flops_table(name, dtype, flops):
    peak, details = datasheet.device_peak_flops("cuda", dtype, name=name)
    assert peak == flops
    assert ("peak_unknown" in details) == (flops is None)


def test_the_peak_of_a_cpu_is_unknown():
    peak, details = datasheet.device_peak_flops("cpu", torch.float32)
    assert peak is None and "fraction of peak is left out" in details["peak_unknown"]


def test_model_dtype_reads_parameters_and_tensor_attributes():
    assert datasheet.model_dtype(LinearToy()) == torch.float32

    class Doubles(Model):
        def __init__(self):
            self.L = torch.zeros(10, 10, dtype=torch.float64)

    assert datasheet.model_dtype(Doubles()) == torch.float64


# --------------------------------------------------------------------------- GPU branches on CPU


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda replaced by a stand-in: device "cuda" works on this CPU-only machine."""
    fake = install_fake_cuda(monkeypatch, FakeCuda())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # allow_tf32 is a computed attribute of torch's cuBLAS module: newer pytest's monkeypatch sees it as
    # absent and fails to delete it at teardown (leaving the stand-ins above in place for later tests),
    # so it is saved and restored by hand.
    matmul = torch.backends.cuda.matmul
    previous = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        yield fake
    finally:
        matmul.allow_tf32 = previous


def test_cuda_code_paths_of_every_metric_run_on_cpu(fake_cuda):
    """With the run's device set to cuda (the toy computes on CPU), every metric takes its CUDA branch:
    events for timing, the allocator's peak for memory, the GPU's peak FLOP/s for the fraction."""
    ctx = _context(device="cuda", fit=FixedFit())
    ctx.fit.step(10)
    rows = {}
    for spec in speed.metric_specs():
        assert spec.incompatibility(ctx.model_spec, ctx.dataset.spec) is None
        rows.update(_by_name(spec.compute(ctx)))
    assert all(m.finite for m in rows.values())
    for name in ("sample_throughput", "eval_throughput", "gpu_sample_throughput", "sample_latency_p50"):
        assert rows[name].details["timer"] == "cuda events" and rows[name].details["device"] == "cuda"
    assert rows["gpu_sample_throughput"].details["requested_batch_size"] == 16 * 256
    # the allocator's peak (5000) minus what was allocated before the call (1000)
    assert rows["peak_memory"].value == 4000 and rows["peak_memory"].details["allocated_before_bytes"] == 1000
    assert {"event.record", "event.synchronize", "reset_peak_memory_stats", "max_memory_allocated"} <= set(
        fake_cuda.calls)
    fraction = rows["achieved_flops_fraction"]
    assert fraction.value == pytest.approx(rows["achieved_flops"].value / 67e12, rel=1e-12)
    assert fraction.details["peak_gpu"] == "H100 SXM" and fraction.details["peak_format"] == "fp32"


def test_gpu_metric_on_a_cpu_run_is_skipped_with_its_reason(fake_cuda, tmp_path):
    """On a machine with a GPU (faked here), a run on the CPU records the GPU metric as skipped."""
    from harness import MetricSkipped
    from harness.host import get_host
    from harness.runner import Runner

    with pytest.raises(MetricSkipped, match="this run's device is cpu"):
        throughput.compute_gpu_sample_throughput(_context())
    runner = Runner(get_host(), get_profile("smoke"), tmp_path, seeds=[0], metrics=["gpu_sample_throughput"])
    store, summary = runner.run(runner.plan(["gaussian"], ["8gaussians"], False))
    df = store.results()
    store.close()
    row = df[df.metric == "gpu_sample_throughput"].iloc[0]
    assert summary["failed"] == 0 and row["status"] == "skipped" and "--device cuda" in row["reason"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip on a machine without a GPU")
def test_gpu_metrics_are_skipped_with_their_reason_without_a_gpu():
    ctx = _context()
    spec = next(s for s in speed.metric_specs() if s.name == "gpu_sample_throughput")
    assert spec.incompatibility(ctx.model_spec, ctx.dataset.spec) == "no CUDA device available"


# --------------------------------------------------------------------------- through the runner

SPEED_METRICS = ["sample_throughput", "sample_latency", "eval_throughput", "train_throughput", "peak_memory",
                 "flops_per_sample", "flops_per_evaluation", "achieved_flops", "gpu_sample_throughput"]


def test_every_speed_metric_is_finite_through_the_runner(tmp_path):
    from harness.host import get_host
    from harness.runner import Runner

    host = get_host()
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0], metrics=SPEED_METRICS)
    store, summary = runner.run(runner.plan(["gaussian", "gmm"], ["8gaussians"], False))
    df = store.results()
    store.close()
    assert summary["ok"] == 2 and summary["failed"] == 0
    expected = {"sample_throughput", "sample_latency_p50", "sample_latency_p95", "eval_throughput",
                "train_throughput", "peak_memory", "flops_per_sample", "flops_per_evaluation", "achieved_flops"}
    for model, rows in df.groupby("model"):
        ok = rows[rows.status == "ok"].set_index("metric")
        assert expected <= set(ok.index), model
        assert ok.loc[list(expected), "value"].map(math.isfinite).all(), model
        assert ok.loc["achieved_flops", "value"] == pytest.approx(
            ok.loc["flops_per_sample", "value"] * ok.loc["sample_throughput", "value"], rel=1e-9)
        assert ok.loc["sample_latency_p50", "value"] <= ok.loc["sample_latency_p95", "value"]
        assert ok.loc["flops_per_sample", "value"] > 0  # both sample through a matrix product
        gpu = rows[rows.metric == "gpu_sample_throughput"]
        if not torch.cuda.is_available():
            assert gpu["status"].tolist() == ["skipped"] and gpu["reason"].tolist() == ["no CUDA device available"]
