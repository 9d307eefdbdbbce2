"""Meta-test: every hook in hookspecs.py is documented (parameters and version) and exercised."""

import inspect

import harness.hookspecs as hookspecs
from harness.profiles import get_profile
from harness.runner import Runner
from tests.fake_plugins import fakes

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("harness_")]


def test_every_hook_is_documented():
    assert len(HOOKS) == 10
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Since " in doc, f"{name} does not say the version it appeared in"
        for param in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f":param {param}:" in doc, f"{name} does not document {param}"


def test_every_hook_is_exercised(host, tmp_path):
    """Registration hooks are called when the registry is built; observer hooks during a run."""
    recorder = fakes.Recorder()
    host.add_plugin(recorder, "recorder")
    called = set()
    for name in HOOKS:
        if name.startswith("harness_register_"):
            impls = getattr(host.pm.hook, name).get_hookimpls()
            assert impls, f"no plugin implements {name}"
    reg = host.registry
    assert reg.models and reg.datasets and reg.metrics and reg.feature_extractors
    assert {"local", "process", "ray"} <= set(reg.executors)
    assert {"csv", "json", "markdown", "html", "latex", "terminal"} <= set(reg.report_formats)
    called |= {n for n in HOOKS if n.startswith("harness_register_") and getattr(host.pm.hook, n).get_hookimpls()}
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=[0], metrics=["nll"])
    runner.run(runner.plan(["stdnormal"], ["tiny"], False))
    called |= {c[0] for c in recorder.calls}
    assert called == set(HOOKS)
    assert [c[0] for c in recorder.calls] == ["harness_run_started", "harness_job_finished", "harness_run_finished"]
