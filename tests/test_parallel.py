"""Parallel by default and no work done twice: the default executor from the declarations, the usable
cores, GPU shares (CUDA driven on CPU), the device chosen by --device auto, speed measured by one seed's
job, phase timings in every job's details, calibration rounds, the progress line and references
computed once across worker processes. No assertion depends on how fast anything runs."""

import json
import multiprocessing
import sqlite3

import pandas as pd
import pytest
import torch

from harness.contracts import UserError
from harness.executors import ExecutorOptions, ExecutorSpec, ProcessPool, cores, process, spec
from harness.profiles import get_profile
from harness.runner import Runner
from harness.speed_sharing import is_speed_metric


def jobs_table(out) -> list:
    db = sqlite3.connect(out / "results.sqlite")
    try:
        rows = db.execute("SELECT model, dataset, seed, details FROM jobs ORDER BY model, dataset, seed").fetchall()
    finally:
        db.close()
    return [(m, d, s, json.loads(details)) for m, d, s, details in rows]


# --------------------------------------------------------------------------- the default executor


def test_the_default_executor_is_the_one_that_declares_it(monkeypatch):
    monkeypatch.delenv(spec.ENVIRONMENT, raising=False)
    made = {name: ExecutorSpec(name, lambda o: None, default=name == "b") for name in ("a", "b")}
    assert spec.default_name(made) == "b"
    monkeypatch.setenv(spec.ENVIRONMENT, "a")
    assert spec.default_name(made) == "a"


@pytest.mark.parametrize("defaults, message", [((), "no installed executor declares itself the default"),
                                               (("a", "b"), "several installed executors declare themselves the "
                                                            "default (a, b)")])
def test_no_default_or_several_is_a_usage_error_naming_the_way_out(defaults, message, monkeypatch):
    monkeypatch.delenv(spec.ENVIRONMENT, raising=False)
    made = {name: ExecutorSpec(name, lambda o: None, default=name in defaults) for name in ("a", "b")}
    with pytest.raises(UserError, match="--executor NAME or \\$HARNESS_EXECUTOR") as raised:
        spec.default_name(made)
    assert message in str(raised.value)


def test_the_installed_default_is_the_process_pool_with_one_worker_per_usable_core(host, monkeypatch):
    monkeypatch.delenv(spec.ENVIRONMENT, raising=False)
    monkeypatch.setattr(cores, "affinity_cores", lambda: 3)
    monkeypatch.setattr(cores, "quota_cores", lambda folders: None)
    executor = spec.make_executor(host, ExecutorOptions())
    assert isinstance(executor, ProcessPool) and executor.workers == 3
    assert [s.name for s in host.registry.executors.values() if s.default] == ["process"]


# --------------------------------------------------------------------------- usable cores


def test_the_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    v2, v1, unlimited = tmp_path / "v2", tmp_path / "v1", tmp_path / "max"
    for folder in (v2, v1, unlimited):
        folder.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    (unlimited / "cpu.max").write_text("max 100000\n")
    assert cores.quota_cores([v2]) == pytest.approx(1.5)
    assert cores.quota_cores([v1]) == pytest.approx(3.0)
    assert cores.quota_cores([unlimited]) is None and cores.quota_cores([tmp_path / "none"]) is None
    assert cores.quota_cores([v1, v2, unlimited]) == pytest.approx(1.5)  # the tightest limit on the path


@pytest.mark.parametrize("affinity, quota, usable", [(8, None, 8), (8, 2.5, 2), (2, 6.0, 2), (4, 0.5, 1)])
def test_usable_cores_are_the_affinity_capped_by_the_quota(affinity, quota, usable, monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.setattr(cores, "quota_cores", lambda folders: quota)
    assert cores.usable_cores() == usable


def test_workers_get_the_cores_shared_out_one_thread_each_when_several_run(monkeypatch):
    monkeypatch.setattr(process, "usable_cores", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert [process.threads_per_worker(n) for n in (1, 2, 4, 8)] == [4, 2, 1, 1]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1 in the coordinator
    assert process.threads_per_worker(1) == 1


def test_pool_size_fits_the_jobs_and_the_gpu_shares():
    assert process.pool_size(4, [0.0] * 10) == 4 and process.pool_size(4, [0.0] * 2) == 2
    assert process.pool_size(8, [1.0] * 5) == 1  # the whole GPU each: one at a time
    assert process.pool_size(8, [0.25] * 5 + [0.5]) == 4


# --------------------------------------------------------------------------- GPU shares and the device


@pytest.mark.parametrize("share, at_once", [(1.0, 1), (0.5, 2)])
def test_gpu_jobs_never_hold_more_than_the_whole_gpu(share, at_once, host, tmp_path):
    """On --device cuda (driven on a CPU: the jobs fail in their workers when they move the model) the
    pool starts no more workers than the shares fit and never runs more jobs at once."""
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0, 1, 2], device="cuda",
                    executor=ProcessPool(4, gpus_per_job=share), metrics=["nll"])
    seen = []
    runner.executor.watch(lambda running: seen.append(len(running)))
    jobs = runner.plan(["stdnormal"], ["tiny"], False)
    results = list(runner.executor.results(runner.job_runner, jobs))
    assert len(results) == 3 and max(seen) <= at_once
    assert process.pool_size(4, [share] * 3) == at_once


def test_a_share_above_zero_is_needed_on_cuda(host, tmp_path):
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0], device="cuda",
                    executor=ProcessPool(2, gpus_per_job=0.0), metrics=["nll"])
    (job, result), = runner.executor.results(runner.job_runner, runner.plan(["stdnormal"], ["tiny"], False))
    assert result.status == "failed" and "GPU share above 0" in result.reason


@pytest.mark.parametrize("available, device", [(True, "cuda"), (False, "cpu")])
def test_device_auto_picks_cuda_when_it_is_available(available, device, monkeypatch):
    from harness.commands.run import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto") == device


def test_the_run_announces_and_stores_its_device(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "run"
    assert main(["run", "--model", "gaussian", "--dataset", "8gaussians", "--profile", "smoke", "--metric", "nll",
                 "--out", str(out), "--no-artifacts"]) == 0
    assert "device cpu; executor local; 1 job(s) to run" in capsys.readouterr().err
    db = sqlite3.connect(out / "results.sqlite")
    info = json.loads(db.execute("SELECT info FROM runs").fetchone()[0])
    db.close()
    assert info["device"] == "cpu" and info["machine"]["fingerprint"]["device"] == "cpu"


# --------------------------------------------------------------------------- speed once per (model, dataset)


def test_speed_metrics_go_to_the_lowest_seed_and_the_others_point_at_it(host, tmp_path):
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[3, 1, 2], metrics=["nll", "sample_throughput"])
    jobs = runner.plan(["gaussian"], ["8gaussians"], False)
    speed = {f"{m.name}:{m.version}" for m in host.registry.metrics.values() if is_speed_metric(m)}
    by_seed = {job.seed: job for job in jobs}
    assert speed & set(by_seed[1].metrics) and by_seed[1].speed_seed is None
    assert all(not speed & set(by_seed[s].metrics) and by_seed[s].speed_seed == 1 for s in (2, 3))
    every = Runner(host, get_profile("smoke"), tmp_path, seeds=[3, 1, 2], metrics=["nll", "sample_throughput"],
                   speed_per_seed=True).plan(["gaussian"], ["8gaussians"], False)
    assert all(speed & set(job.metrics) and job.speed_seed is None for job in every)
    keys = {job.seed: job.key for job in every}
    assert keys[1] == by_seed[1].key and keys[2] != by_seed[2].key  # a job's key follows its metrics


def test_a_speed_row_is_one_jobs_figure_and_quality_rows_keep_every_seed(host, tmp_path):
    from harness.summary import summarise

    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0, 1], metrics=["nll", "sample_throughput"])
    store, _ = runner.run(runner.plan(["gaussian"], ["8gaussians"], False))
    summary = summarise(store.results()).set_index("metric")
    store.close()
    assert summary.loc["nll", "seeds"] == 2 and summary.loc["sample_throughput", "seeds"] == 1
    assert summary.loc["sample_throughput", "seed_list"] == [0]
    details = {seed: d for _, _, seed, d in jobs_table(tmp_path)}
    assert details[1]["speed_from_seed"] == 0 and "speed_from_seed" not in details[0]


# --------------------------------------------------------------------------- phases, calibration, progress


def test_every_job_says_where_its_time_went(host, tmp_path):
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0, 1], metrics=["nll", "fid"],
                    executor=ProcessPool(2))
    runner.run(runner.plan(["gaussian"], ["8gaussians"], False))[0].close()
    rows = jobs_table(tmp_path)
    for _, _, _, details in rows:
        phases, cpu = details["phases"], details["phases_cpu"]
        assert {"dataset", "build", "fit", "metrics", "save", "samples", "dispatch"} <= set(phases)
        assert {"dataset", "build", "fit", "metrics", "save"} <= set(cpu)
        assert phases["samples"] <= phases["metrics"]
        assert sum(details["metric_seconds"].values()) <= phases["metrics"] + 1e-3
    # each of the two workers started once: its first job carries the start-up
    assert 1 <= sum("worker_start" in details["phases"] for _, _, _, details in rows) <= 2


def test_calibration_rounds_between_jobs_follow_the_interval(host, tmp_path, monkeypatch):
    import harness.runner

    def rounds(out, interval):
        monkeypatch.setattr(harness.runner, "CALIBRATION_INTERVAL_S", interval)
        runner = Runner(host, get_profile("smoke"), out, seeds=[0, 1, 2], metrics=["nll"])
        store, summary = runner.run(runner.plan(["stdnormal"], ["tiny"], False))
        info = store.runs()[-1]["info"]
        store.close()
        return info["machine"]["calibration"]["between_jobs"]

    assert rounds(tmp_path / "every", 0.0) == 2  # between each two of the three jobs
    assert rounds(tmp_path / "seldom", 3600.0) == 0


def test_the_progress_line_names_the_running_jobs(host, tmp_path):
    notes = []

    class Bar:
        def __init__(self, total, desc, leave=True):
            pass

        def set_postfix_str(self, text, refresh=True):
            notes.append(text)

        def update(self, n=1):
            pass

        def close(self):
            pass

    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0, 1], metrics=["nll"], progress=Bar)
    runner.run(runner.plan(["stdnormal"], ["tiny"], False))[0].close()
    assert notes == ["running: stdnormal/tiny/seed0", "", "running: stdnormal/tiny/seed1", ""]


# --------------------------------------------------------------------------- the same results in parallel


def test_the_default_executor_gives_what_one_job_at_a_time_gives(tmp_path, cli_env):
    """Exact likelihoods equal; the stochastic ones (a VAE's importance-weighted estimate, sample
    quality) within their standard errors."""
    import subprocess
    import sys

    cli_env.pop(spec.ENVIRONMENT, None)
    args = [sys.executable, "-m", "harness", "run", "--model", "gaussian", "vae", "--dataset", "8gaussians",
            "--profile", "smoke", "--seeds", "2", "--metric", "nll", "fid", "--no-progress", "--no-artifacts"]
    for name, extra in (("default", []), ("local", ["--executor", "local"])):
        done = subprocess.run(args + ["--out", str(tmp_path / name)] + extra, env=cli_env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert f"executor {'process' if name == 'default' else 'local'}" in done.stderr
    a, b = (pd.read_csv(tmp_path / name / "results.csv").set_index(["model", "seed", "id"]).sort_index()
            for name in ("default", "local"))
    assert a.index.equals(b.index)
    exact = a["estimator"] == "exact"
    assert exact.any() and (a.loc[exact, "value"] == b.loc[exact, "value"]).all()
    rest = ~exact
    spread = 3 * (a.loc[rest, "stderr"].fillna(0) ** 2 + b.loc[rest, "stderr"].fillna(0) ** 2) ** 0.5
    assert ((a.loc[rest, "value"] - b.loc[rest, "value"]).abs() <= spread + 1e-9).all()


# --------------------------------------------------------------------------- references computed once


class _SlowExtractor:
    """Features that take a while and leave a line in ``log`` each time they are computed."""

    fingerprint = "slow"

    def __init__(self, log):
        self.log = log

    def features(self, x):
        import time

        with open(self.log, "a") as f:
            f.write("computed\n")
        time.sleep(0.5)
        return x.reshape(len(x), -1).double()


def _reference_in_a_process(cache_dir, log):
    from harness.contracts import Dataset
    from harness.data import provenance_hash
    from harness_plugins.metrics.fidelity.references import reference_features
    from tests.fake_plugins.fakes import harness_register_datasets

    specs = []
    harness_register_datasets(specs.append)
    tiny = next(s for s in specs if s.name == "tiny")
    splits = tiny.load(None)
    data = Dataset(tiny, splits, provenance_hash(splits, "tiny"))
    reference_features(data, "test", "slow", _SlowExtractor(log), 50, cache_dir=cache_dir)


def test_two_workers_compute_a_reference_once_and_share_it(tmp_path):
    log = tmp_path / "log"
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_reference_in_a_process, args=(tmp_path / "cache", log)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text().count("computed") == 1


def test_the_noise_floor_is_scored_once_per_run_and_read_by_the_other_workers(tmp_path, monkeypatch):
    """A second worker (a fresh run cache, the same cache dir) reads the floor the first one wrote."""
    from harness_plugins.metrics.fidelity import references
    from tests.fake_plugins.fakes import harness_register_datasets
    from harness.contracts import Dataset
    from harness.data import provenance_hash

    specs = []
    harness_register_datasets(specs.append)
    tiny = next(s for s in specs if s.name == "tiny")
    splits = tiny.load(None)
    data = Dataset(tiny, splits, provenance_hash(splits, "tiny"))
    scored = []
    real = references.score
    monkeypatch.setattr(references, "score", lambda *a: scored.append(a[0]) or real(*a))
    extractor = _SlowExtractor(tmp_path / "log")
    first = references.train_vs_test(data, "fid", "slow", extractor, 50, tmp_path / "cache", {})
    second = references.train_vs_test(data, "fid", "slow", extractor, 50, tmp_path / "cache", {})
    assert scored == ["fid"] and first == second and first["n"] == 50
