"""`python -m harness new-plugin`: the generated package installs and passes `check` as generated."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.new_plugin import KINDS, files

REPO = Path(__file__).resolve().parents[1]


def harness(*args, cwd, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture
def env():
    """The installed plugins only (no test fakes), one thread."""
    out = {k: v for k, v in os.environ.items() if k not in ("HARNESS_PLUGINS", "HARNESS_STRICT_PLUGINS")}
    out["OMP_NUM_THREADS"] = "1"
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_every_template_renders_to_python_and_toml_with_no_placeholder_left(kind):
    import tomllib

    rendered = files("my-thing", kind)
    assert set(rendered) == {"pyproject.toml", "README.md", "harness_my_thing/__init__.py",
                             "harness_my_thing/plugin.py", "tests/test_my_thing.py"}
    for path, text in rendered.items():
        assert "${" not in text, path
        if path.endswith(".py"):
            ast.parse(text, path)
    project = tomllib.loads(rendered["pyproject.toml"])
    assert project["project"]["entry-points"]["harness"] == {"my-thing": "harness_my_thing.plugin"}


def test_new_plugin_has_help(capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["new-plugin", "--help"])
    assert exc.value.code == 0 and "--kind" in capsys.readouterr().out


def test_it_refuses_an_existing_directory_a_bad_name_and_a_taken_name(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.delenv("HARNESS_PLUGINS", raising=False)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("keep me")
    assert main(["new-plugin", "demo", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["mine.txt"]
    for name, words in (("Demo", "lowercase"), ("1demo", "starting with a letter"), ("gaussian", "already registered")):
        assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2
        assert words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # nothing half-written


@pytest.mark.slow
def test_generated_plugins_install_pass_check_run_and_their_own_tests(tmp_path, env):
    """new-plugin for each kind, pip install (a wheel built offline, into a directory of its own), then
    `check` passes, `run --model demo --profile smoke` succeeds and the generated tests pass."""
    made = harness("new-plugin", "demo", "--format", "json", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["directory"] == "demo"
    for name, kind in (("demo-data", "dataset"), ("demo-metric", "metric")):
        assert harness("new-plugin", name, "--kind", kind, cwd=tmp_path, env=env).returncode == 0
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), "./demo", "./demo-data", "./demo-metric"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])

    plugins = harness("plugins", "--format", "json", cwd=tmp_path, env=env)
    assert {"demo", "demo-data", "demo-metric"} <= {p["name"] for p in json.loads(plugins.stdout)}
    checked = harness("check", "demo", "demo-data", "demo-metric", "--format", "json", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert {r["subject"] for r in report["results"]} == {"model:demo", "dataset:demo-data", "metric:demo-metric"}
    assert report["counts"]["failed"] == 0 and report["counts"]["passed"] >= 15

    run = harness("run", "--model", "demo", "--profile", "smoke", "--out", "out", "--no-progress",
                  "--format", "json", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out" / "results.csv").exists()

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "demo", "demo-data",
                            "demo-metric"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
