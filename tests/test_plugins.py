"""The plugin manager: safe loading, strict mode, block list, duplicate names, registration checks."""

import importlib.metadata

import pytest

from harness.host import PluginHost, PluginError
from tests.fake_plugins import fakes


class FakeEntryPoint:
    def __init__(self, name, value):
        self.name, self.value, self.dist = name, value, None

    def load(self):
        return importlib.import_module(self.value)


@pytest.fixture
def fake_entry_points(monkeypatch):
    eps = [FakeEntryPoint("fakes", "tests.fake_plugins.fakes"), FakeEntryPoint("broken", "tests.fake_plugins.broken")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: eps if group == "harness" else [])
    monkeypatch.delenv("HARNESS_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("HARNESS_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("HARNESS_PLUGINS", raising=False)
    return eps


def test_plugin_that_fails_to_import_is_recorded_and_skipped(fake_entry_points):
    h = PluginHost()
    h.load_entry_points()
    assert "deliberately broken" in h.plugins["broken"].error
    assert h.plugins["fakes"].error is None
    assert "harness_register_models" in h.plugins["fakes"].hooks
    assert {"stdnormal", "boom", "nanny", "sleepy"} <= set(h.registry.models)


def test_strict_mode_makes_import_failure_fatal(fake_entry_points, monkeypatch):
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken.*deliberately broken"):
        PluginHost().load_entry_points()


def test_block_list_disables_a_plugin(fake_entry_points, monkeypatch):
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "broken,fakes")
    h = PluginHost()
    h.load_entry_points()
    assert h.plugins["broken"].blocked and h.plugins["broken"].error is None
    assert "stdnormal" not in h.registry.models


def test_duplicate_name_is_an_error_naming_both_plugins():
    from tests.fake_plugins import duplicate

    h = PluginHost()
    h.add_plugin(fakes, "fakes")
    h.add_plugin(duplicate, "dup")
    with pytest.raises(PluginError) as err:
        h.registry
    assert "'stdnormal'" in str(err.value) and "'fakes'" in str(err.value) and "'dup'" in str(err.value)


def test_registering_the_wrong_type_is_rejected():
    from harness import hookimpl

    class Bad:
        @hookimpl
        def harness_register_models(self, register):
            register({"name": "not a spec"})

    h = PluginHost()
    h.add_plugin(Bad(), "bad")
    with pytest.raises(PluginError, match="expected ModelSpec"):
        h.registry


def test_harness_plugins_env_loads_modules_by_path(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes, tests.fake_plugins.broken")
    h = PluginHost()
    h.load_entry_points(strict=False)
    assert "stdnormal" in h.registry.models
    assert "deliberately broken" in h.plugins["tests.fake_plugins.broken"].error


def test_unknown_name_suggests_close_match(host):
    from harness.contracts import UserError

    with pytest.raises(UserError, match="did you mean 'gaussian'"):
        host.model("gausian")
