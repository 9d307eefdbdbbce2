"""Plugins written for the previous minor version keep working, with one warning that says what to
write instead; and a name that a plugin which failed to load would have provided says which plugin
failed and why (run, check, evaluate, list), for plugins loaded by import path and installed ones."""

import subprocess
import sys
import textwrap
import warnings

import pytest

from harness import Hyperparameters, ModelSpec
from harness.cli import main
from harness.compat import PluginDeprecationWarning
from tests.fake_plugins.fakes import StandardNormal

PROFILES = ("smoke", "quick", "full")
OLD = {"smoke": {"steps": 100, "lr": 1e-2, "hidden": 8}, "quick": {"steps": 1000, "lr": 1e-3},
       "full": {"steps": 20000, "batch": 512}}


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def old_resolution(defaults, profile):
    """harness 0.1's ModelSpec.hparams: the profile's dictionary, else quick's."""
    return dict(defaults[profile]) if profile in defaults else dict(defaults.get("quick", {}))


def spec(**kwargs):
    return ModelSpec(name="old", family="f", factory=StandardNormal, data_kinds=["continuous"], **kwargs)


def test_the_0_1_form_resolves_as_0_1_did_for_every_key_a_profile_gives():
    with pytest.warns(PluginDeprecationWarning, match=r"hyperparameters=harness\.Hyperparameters\(defaults="):
        mapped = spec(defaults=OLD)
    assert isinstance(mapped.hyperparameters, Hyperparameters) and mapped.defaults is None
    for profile in PROFILES + ("custom",):
        new, old = mapped.resolve_hparams(profile), old_resolution(OLD, profile)
        assert {k: new[k] for k in old} == old, profile
    assert set(mapped.resolve_hparams("quick")) == {"steps", "lr", "hidden", "batch"}  # every key declared once


def test_an_integer_in_one_profile_and_a_float_in_another_is_a_float_key():
    with pytest.warns(PluginDeprecationWarning):
        mapped = spec(defaults={"smoke": {"scale": 0.5}, "quick": {"scale": 2}})
    assert mapped.resolve_hparams("quick") == {"scale": 2.0} and mapped.resolve_hparams("smoke") == {"scale": 0.5}


def test_both_forms_at_once_or_a_malformed_old_form_are_errors():
    with pytest.raises(TypeError, match="not both"):
        spec(defaults=OLD, hyperparameters=Hyperparameters(defaults={"steps": 1}))
    with pytest.raises(TypeError, match="mapping of profile name"):
        spec(defaults={"smoke": 3})


@pytest.mark.slow
def test_a_plugin_written_for_0_1_passes_check_with_one_deprecation_warning(monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.zuko_v01")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, _ = cli(capsys, "check", "zuko-nsf")
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert code == 0, out
    assert "7 passed, 0 failed" in out
    assert len(deprecations) == 1 and issubclass(deprecations[0].category, PluginDeprecationWarning)
    assert deprecations[0].filename.endswith("zuko_v01.py")  # points at the plugin's own ModelSpec(...)
    assert "profiles={'smoke': {'steps': 60, 'hidden': 16}}" in str(deprecations[0].message)


def test_the_command_line_shows_the_deprecation_once_and_python_w_decides(cli_env):
    cli_env["HARNESS_PLUGINS"] = "tests.fake_plugins.zuko_v01"
    done = subprocess.run([sys.executable, "-m", "harness", "list", "models"], env=cli_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "zuko-nsf" in done.stdout
    assert done.stderr.count("PluginDeprecationWarning") == 1 and "zuko_v01.py" in done.stderr
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m", "harness", "list", "models"],
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert "zuko-nsf" not in done.stdout  # the user's -W error made the old form fail the plugin's registration
    assert "Traceback" not in done.stderr


def test_names_of_a_plugin_that_failed_to_import_say_which_plugin_and_why(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.missing_dependency,tests.fake_plugins.fakes")
    why = ("plugin tests.fake_plugins.missing_dependency (module tests.fake_plugins.missing_dependency, not an "
           "installed package) failed to load: ModuleNotFoundError: No module named "
           "'harness_test_package_that_is_not_installed'; see `harness plugins`")
    code, _, err = cli(capsys, "run", "--model", "ghost-flow", "--dataset", "tiny", "--out", tmp_path / "r")
    assert code == 2 and f"model 'ghost-flow': {why}" in err
    code, _, err = cli(capsys, "run", "--model", "stdnormal", "--dataset", "ghost-moons", "--out", tmp_path / "r")
    assert code == 2 and f"dataset 'ghost-moons': {why}" in err
    (tmp_path / "w.safetensors").write_bytes(b"")
    code, _, err = cli(capsys, "evaluate", "--model", "ghost-flow", "--checkpoint", tmp_path / "w.safetensors",
                       "--dataset", "tiny", "--out", tmp_path / "e")
    assert code == 2 and f"model 'ghost-flow': {why}" in err
    code, out, _ = cli(capsys, "check", "ghost-moons")
    assert code == 1 and f"'ghost-moons': {why}" in out
    code, _, err = cli(capsys, "list", "models")
    assert code == 0 and "(it provides ghost-flow, ghost-moons)" in err
    code, _, err = cli(capsys, "run", "--model", "ghost-flwo", "--dataset", "tiny", "--out", tmp_path / "r")
    assert code == 2 and "unknown model 'ghost-flwo'" in err  # a name it would not provide stays unknown
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()


def test_an_installed_plugin_whose_registration_fails_is_named_with_its_package_and_version(
        monkeypatch, capsys, tmp_path):
    site = tmp_path / "site"
    package = site / "harness_ghost"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from harness_ghost.models import harness_register_models  # noqa: F401\n")
    (package / "models.py").write_text(textwrap.dedent('''
        from harness import ModelSpec, hookimpl

        def _spec(name, **kwargs):
            return ModelSpec(name=name, family="ghost", factory=None, data_kinds=["continuous"], **kwargs)

        @hookimpl
        def harness_register_models(register):
            register(_spec("ghost-nsf", transforms=3))  # a keyword ModelSpec does not have
    '''))
    info = site / "harness_ghost-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-ghost\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[harness]\nghost = harness_ghost\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")
    code, _, err = cli(capsys, "run", "--model", "ghost-nsf", "--dataset", "tiny", "--out", tmp_path / "r")
    assert code == 2
    assert ("model 'ghost-nsf': plugin ghost (harness-ghost 0.3.1) failed to load: TypeError in "
            "harness_register_models: ") in err and "transforms" in err and "see `harness plugins`" in err
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "ghost")
    code, _, err = cli(capsys, "run", "--model", "ghost-nsf", "--dataset", "tiny", "--out", tmp_path / "r")
    assert code == 2 and "plugin ghost (harness-ghost 0.3.1) is blocked by HARNESS_DISABLE_PLUGINS" in err
