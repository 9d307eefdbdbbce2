"""Fixtures for the pytest-benchmark suite: every installed model, built on a dataset it declares for
the smoke profile and fitted briefly with its smoke hyperparameters.

The suite runs only when asked for (``tox -e bench``, ``pytest tests/benchmarks ...`` or any run with
``--benchmark-only``); a plain ``pytest`` over the whole tree skips it, so timings never slow the
ordinary tests down.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent

FIT_SECONDS = 3.0  # each model trains at most this long (its smoke budget usually ends sooner)
SAMPLE_BATCH = 64  # fixed sizes of the benchmarked calls
EVAL_BATCH = 256


def _asked_for(config) -> bool:
    if config.getoption("benchmark_only", default=False):
        return True
    for arg in config.args:
        path = Path(str(arg).split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config, items):
    if _asked_for(config):
        return
    skip = pytest.mark.skip(reason="benchmarks run with `tox -e bench` or `pytest tests/benchmarks --benchmark-only`")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def _host():
    from harness.host import get_host

    return get_host()


def pytest_generate_tests(metafunc):
    if "model_name" in metafunc.fixturenames:
        metafunc.parametrize("model_name", sorted(_host().registry.models))


@pytest.fixture(scope="session")
def bench_host():
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    return _host()


def fitting_dataset(host, spec):
    """The first installed dataset among the model's smoke defaults that it accepts, else any."""
    reg = host.registry
    names = spec.datasets_for("smoke", reg.datasets) + sorted(reg.datasets)
    for name in names:
        if name in reg.datasets and spec.incompatibility(reg.datasets[name]) is None:
            d = reg.datasets[name]
            if d.check is None or d.check(Path("datasets")) is None:
                return d
    return None


class Fitted:
    """A model fitted for benchmarking, with the dataset it was fitted on."""

    def __init__(self, host, name):
        from harness.contracts import Dataset, FitContext
        from harness.data import provenance_hash

        self.spec = host.model(name)
        dspec = fitting_dataset(host, self.spec)
        if dspec is None:
            pytest.skip(f"no installed dataset fits {name}")
        splits = dspec.load(Path("datasets"))
        self.dataset = Dataset(dspec, splits, provenance_hash(splits, dspec.name))
        torch.manual_seed(0)
        self.model = self.spec.factory(dspec, self.spec.resolve_hparams("smoke", dspec))
        self.model.to("cpu")
        self.fit = FitContext("cpu", seed=0, deadline=time.monotonic() + FIT_SECONDS)
        self.model.fit(splits.train, splits.val, self.fit)
        self.fit_seconds = self.fit.seconds
        self.conditional = "conditional" in {c.value for c in self.spec.capabilities} and bool(dspec.num_classes)
        self.has_likelihood = "log_likelihood" in {c.value for c in self.spec.capabilities}

    def labels(self, n):
        if not self.conditional:
            return None
        return torch.arange(n) % self.dataset.spec.num_classes

    def sample_call(self, n=SAMPLE_BATCH):
        gen = torch.Generator().manual_seed(0)
        labels = self.labels(n)
        return lambda: self.model.sample(n, gen, labels=labels)

    def eval_call(self, n=EVAL_BATCH):
        test = self.dataset.test
        x = test.x[:n]
        y = test.y[:n] if self.conditional and test.y is not None else None
        return lambda: self.model.log_likelihood(x, y)

    def info(self) -> dict:
        return {"model": self.spec.name, "family": self.spec.family, "dataset": self.dataset.name,
                "fit_steps": self.fit.steps, "fit_seconds": round(self.fit_seconds, 3),
                "threads": torch.get_num_threads()}


@pytest.fixture(scope="session")
def fitted_models(bench_host):
    cache = {}

    def get(name) -> Fitted:
        if name not in cache:
            cache[name] = Fitted(bench_host, name)
        return cache[name]

    return get
