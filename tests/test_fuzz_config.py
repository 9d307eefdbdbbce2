"""Fuzzed run configurations: TOML files (valid TOML of random structure, near-miss configs whose keys
and values are drawn from what `run --config` reads, and arbitrary text) and `--set` values, given to
`run`: every one ends with exit 0, 1 or 2 and a message, never a traceback, and nothing is written
outside --out (tests/fuzzing.py)."""

import math
import subprocess
import sys

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzzing import Sandbox, budget, run_command

PLUGINS = "tests.fake_plugins.fakes,tests.fake_plugins.typed"
MODELS = ["typed", "stdnormal", "boom", "nanny", "gaussian", "fake", "typd", ""]  # fast models, a family, typos
DATASETS = ["tiny", "8gaussians", "digits", "tiny2", ""]
KEYS = ["steps", "rate", "flag", "arch", "widths", "auto", "step", ""]


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS", PLUGINS)


# ----------------------------------------------------------------------------- writing TOML


def toml_string(text: str) -> str:
    escaped = "".join(c if c not in '"\\' and (c >= " " or c == "\t") and c != "\x7f" else f"\\u{ord(c):04x}"
                      for c in text)
    return f'"{escaped}"'


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict) -> str:
    """Top-level scalars first, then one [table] per dict (its values inline)."""
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_string(name)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- strategies

scalars = st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.integers(-3, 3), st.sampled_from(MODELS + DATASETS + KEYS))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=3),
                      max_leaves=8)
small_seeds = st.one_of(st.integers(-2, 3), st.lists(st.integers(-2**40, 2**70), max_size=3),
                        st.lists(st.integers(0, 4), max_size=3), values)
run_tables = st.fixed_dictionaries({}, optional={
    "models": st.one_of(st.lists(st.sampled_from(MODELS), max_size=3), values),
    "datasets": st.one_of(st.lists(st.sampled_from(DATASETS), max_size=2), values),
    "metrics": st.one_of(st.lists(st.sampled_from(["nll", "bpd", "nope", "fid"]), max_size=2), values),
    "profile": st.one_of(st.sampled_from(["smoke", "quick", "full", "huge"]), values),
    "seeds": small_seeds,
    "device": st.one_of(st.sampled_from(["cpu", "auto", "cuda", "cpu:0", "meta", "tpu", ""]), values),
    "job_timeout": st.one_of(st.floats(), st.integers(-5, 60), values),
    "all": st.one_of(st.just(False), values.filter(lambda v: v is not True)),
    "extra": values,
})
set_tables = st.dictionaries(
    st.one_of(st.builds(lambda m, k: f"{m}.{k}", st.sampled_from(MODELS), st.sampled_from(KEYS)), st.text(max_size=10)),
    st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values, max_size=2)), max_size=3)
hparams_tables = st.dictionaries(
    st.sampled_from(MODELS), st.one_of(st.dictionaries(st.sampled_from(DATASETS),
                                                       st.one_of(st.dictionaries(st.sampled_from(KEYS), values,
                                                                                 max_size=3), values), max_size=2),
                                       values), max_size=2)
documents = st.fixed_dictionaries({}, optional={"run": st.one_of(run_tables, values), "set": st.one_of(set_tables, values),
                                                "hparams": st.one_of(hparams_tables, values),
                                                "extra": st.dictionaries(st.text(max_size=5), values, max_size=2)})


# Configurations of the right shape (the values still fuzzed), so that many examples run their jobs.
near_valid = st.fixed_dictionaries({"run": st.fixed_dictionaries(
    {"models": st.lists(st.sampled_from(["typed", "stdnormal", "boom", "nanny"]), min_size=1, max_size=2)},
    optional={"datasets": st.lists(st.sampled_from(["tiny", "8gaussians"]), min_size=1, max_size=2),
              "profile": st.sampled_from(["smoke", "quick", "full"]),
              "seeds": st.one_of(st.integers(1, 2), st.lists(st.integers(-2**70, 2**70), min_size=1, max_size=2)),
              "device": st.sampled_from(["cpu", "auto", "cuda", "cpu:0", "meta", "", "tpu"]),
              "job_timeout": st.one_of(st.floats(), st.integers(-5, 60))})},
    optional={"set": st.dictionaries(st.sampled_from([f"typed.{k}" for k in KEYS] + ["fake.steps"]), scalars,
                                     max_size=2),
              "hparams": st.fixed_dictionaries({"typed": st.dictionaries(
                  st.sampled_from(DATASETS), st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2), max_size=2)})})


def no_all(doc) -> bool:
    """`all = true` runs every installed model: minutes, not a fuzz example."""
    run = doc.get("run")
    return not (isinstance(run, dict) and run.get("all") is True)


config_texts = st.one_of(near_valid.map(toml_document), documents.filter(no_all).map(toml_document),
                         st.text(max_size=200),
                         st.builds(lambda doc, cut: toml_document(doc)[:cut], documents.filter(no_all),
                                   st.integers(0, 400)))


@given(text=config_texts)
@budget(60)
def test_fuzzed_config_files(tmp_path_factory, text):
    box = Sandbox(tmp_path_factory.getbasetemp())
    config = box.inputs / "config.toml"
    config.write_text(text, encoding="utf-8")
    code, _, _ = run_command(box, ["run", "--config", config, "--metric", "nll", "--out", box.out, "--no-progress"])
    event(f"exit {code}")


set_values = st.one_of(st.sampled_from(["3", "-1", "0", "1e999", "nan", "-inf", "0.25", "true", "false", '"conv"',
                                        '"mlp"', "conv", "[1, 2]", "[1.5]", "[]", '["a"]', "{a = 1}", "1979-05-27",
                                        "07:32:00", "[[1]]", "1_000", "0x1F", '"', "", " ", "=", "\x00"]),
                       st.text(max_size=15), values.map(toml_value))
set_texts = st.one_of(st.builds(lambda m, k, v: f"{m}.{k}={v}", st.sampled_from(MODELS), st.sampled_from(KEYS), set_values),
                      st.text(max_size=30))


@given(sets=st.lists(set_texts, min_size=1, max_size=3))
@budget(50)
def test_fuzzed_set_values(tmp_path_factory, sets):
    box = Sandbox(tmp_path_factory.getbasetemp())
    argv = ["run", "--model", "typed", "--dataset", "tiny", "--metric", "nll", "--out", box.out, "--no-progress"]
    for text in sets:
        argv += ["--set", text]
    code, _, _ = run_command(box, argv)
    event(f"exit {code}")


@pytest.mark.parametrize("text", ["\x00\xff[[[", "[run]\ndevice = \"tpu\"\nmodels = [\"typed\"]\nseeds = [1180591620717411303424]\n"])
def test_a_fuzzed_config_in_a_subprocess(tmp_path, cli_env, text):
    """The property outside pytest's process too: exit 0, 1 or 2, a message on stderr, no traceback."""
    cli_env["HARNESS_PLUGINS"] = PLUGINS
    config = tmp_path / "config.toml"
    config.write_bytes(text.encode("utf-8", "surrogateescape"))
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--config", str(config), "--metric", "nll",
                           "--out", str(tmp_path / "out"), "--no-progress"], env=cli_env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode in (0, 1, 2) and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0 or done.stderr.strip()
