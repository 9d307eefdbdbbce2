"""The third-party example plugin in examples/ works through the public API alone."""

import sys
from pathlib import Path

import numpy as np
from scipy.stats import laplace

from harness.profiles import get_profile
from harness.runner import Runner

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "harness-example-plugin"


def test_example_plugin_passes_the_conformance_kit(harness_check, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    sys.modules.pop("harness_example.laplace", None)
    from harness_example import laplace as plugin

    report = harness_check("laplace", plugins={"example": plugin})
    assert report.find("model:laplace", "state_round_trip", "continuous").passed


def test_example_plugin_runs_and_its_nll_matches_scipy(host, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    sys.modules.pop("harness_example.laplace", None)
    from harness_example import laplace as plugin

    if "laplace" not in host.registry.models:  # not pip-installed here: register it by hand
        host.add_plugin(plugin, "example")
    runner = Runner(host, get_profile("quick"), tmp_path, seeds=[0], metrics=["nll"])  # whole test split
    store, summary = runner.run(runner.plan(["laplace"], ["8gaussians"], False))
    assert summary["ok"] == 1
    nll = store.results().query("metric == 'nll'")["value"].iloc[0]
    data = host.dataset("8gaussians").load(None)
    xtr, xte = data.train.x.double().numpy(), data.test.x.double().numpy()
    loc = np.median(xtr, 0)
    scale = np.abs(xtr - loc).mean(0)
    ref = -laplace.logpdf(xte, loc, scale).sum(1).mean()
    assert abs(nll - ref) < 1e-4
