"""Fuzzed baselines for `compare`: arbitrary JSON, and a real baseline with parts removed, replaced by
other JSON values or of other types: every one ends with exit 0, 1 or 2 and a message, never a
traceback, and `compare` writes nothing (tests/fuzzing.py)."""

import copy
import json
import subprocess
import sys

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from harness.cli import main
from tests.fuzzing import Sandbox, budget, run_command

RUN = ["run", "--model", "stdnormal", "sleepy", "--dataset", "tiny", "--seeds", "2", "--profile", "smoke",
       "--metric", "nll", "sample_throughput", "--set", "sleepy.sleep=0", "--no-progress"]


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A finished run and the baseline saved from it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")
        root = tmp_path_factory.mktemp("baseline")
        assert main(RUN + ["--out", str(root / "run")]) == 0
        assert main(["baseline", "save", str(root / "run"), "--to", str(root / "base.json")]) == 0
    return root / "run", json.loads((root / "base.json").read_text())


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4),
                           max_leaves=10)


def paths(doc, prefix=()):
    """Every (path of keys and indices) in a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from paths(value, prefix + (i,))


@st.composite
def mutated(draw, baseline):
    doc = copy.deepcopy(baseline)
    for _ in range(draw(st.integers(1, 4))):
        spots = [p for p in paths(doc) if p]
        if not spots:
            break
        spot = draw(st.sampled_from(spots))
        parent = doc
        for step in spot[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            del parent[spot[-1]]
        else:
            parent[spot[-1]] = draw(json_values)
    return doc


@given(data=st.data())
@budget(80)
def test_fuzzed_baselines(tmp_path_factory, results, data):
    directory, baseline = results
    box = Sandbox(tmp_path_factory.getbasetemp())
    doc = data.draw(st.one_of(json_values, mutated(baseline), mutated(baseline)))
    path = box.inputs / "baseline.json"
    text = json.dumps(doc, allow_nan=True)
    if data.draw(st.integers(0, 9)) == 0:
        text = text[: data.draw(st.integers(0, len(text)))]
    path.write_text(text)
    fmt = data.draw(st.sampled_from(["table", "json"]))
    code, _, _ = run_command(box, ["compare", directory, "--baseline", path, "--format", fmt])
    event(f"exit {code}")


def test_a_fuzzed_baseline_in_a_subprocess(tmp_path, cli_env, results):
    directory, baseline = results
    broken = copy.deepcopy(baseline)
    for entry in broken.get("entries", []):
        entry["mean"] = "fast"
    for name, doc in (("types.json", broken), ("list.json", [1, 2])):
        (tmp_path / name).write_text(json.dumps(doc))
        done = subprocess.run([sys.executable, "-m", "harness", "compare", str(directory), "--baseline",
                               str(tmp_path / name)], env=cli_env, capture_output=True, text=True, timeout=300)
        assert done.returncode in (0, 1, 2) and "Traceback" not in done.stderr, (name, done.stderr)
        assert done.returncode == 0 or done.stderr.strip(), name
