"""Fuzzed weights for `evaluate --checkpoint`: the model's own state with names dropped, added or
renamed, shapes, dtypes and values changed (NaN, infinities), saved as safetensors or torch files;
random bytes; torch files of arbitrary Python structures; pickles that would run code. Every one ends
with exit 0, 1 or 2 and a message, never a traceback, and nothing is written outside --out
(tests/fuzzing.py)."""

import io
import os
import pickle
import subprocess
import sys

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzzing import Sandbox, budget, run_command

MODEL, DATASET = "planar", "8gaussians"  # a small flow whose unfitted instance exports its tensors
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8,
          torch.bool]


@pytest.fixture(scope="module")
def state():
    from harness.host import get_host

    host = get_host()
    spec, dataset = host.model(MODEL), host.dataset(DATASET)
    return spec.factory(dataset, spec.resolve_hparams("smoke", dataset)).export_state()


@st.composite
def tensors(draw, like=None):
    shape = like.shape if like is not None and draw(st.integers(0, 2)) else \
        tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    dtype = like.dtype if like is not None and draw(st.integers(0, 2)) else draw(st.sampled_from(DTYPES))
    fill = draw(st.sampled_from(["random", "random", "nan", "inf", "zero", "huge"]))
    base = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**31))))
    value = {"random": base, "nan": torch.full(shape, float("nan")), "inf": torch.full(shape, float("inf")),
             "zero": torch.zeros(shape), "huge": base * 1e30}[fill]
    return value.to(dtype)


@st.composite
def mutated_states(draw, state):
    names = [n for n in state if draw(st.integers(0, 7))]  # most names kept
    out = {n: (draw(tensors(state[n])) if draw(st.integers(0, 3)) == 0 else state[n].clone()) for n in names}
    for _ in range(draw(st.integers(0, 2))):
        out[draw(st.sampled_from(["extra", "flow.layers.9.w", "", "flow..w", "é", "flow.layers.0.mean.x"]))] = \
            draw(tensors())
    return out


python_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.binary(max_size=5),
              st.builds(lambda n: torch.ones(n), st.integers(0, 3))),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner,
                                                                max_size=3) | st.tuples(inner, inner),
    max_leaves=8)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@st.composite
def checkpoints(draw, box, state):
    kind = draw(st.sampled_from(["safetensors", "safetensors", "torch", "torch", "python", "bytes", "code"]))
    suffix = {"safetensors": ".safetensors", "torch": ".pt"}.get(kind, draw(st.sampled_from(
        [".safetensors", ".pt", ".bin", "", ".SAFETENSORS"])))
    path = box.inputs / f"weights{suffix}"
    if kind == "safetensors" and suffix == ".safetensors":
        from safetensors.torch import save_file

        weights = {k: v.contiguous() for k, v in draw(mutated_states(state)).items() if k}
        save_file(weights, str(path))
        if draw(st.integers(0, 4)) == 0:  # truncated
            path.write_bytes(path.read_bytes()[: draw(st.integers(0, path.stat().st_size))])
    elif kind == "torch":
        weights = draw(mutated_states(state))
        if draw(st.booleans()):  # nested as state_dict-like mappings
            weights = {"model": weights}
        torch.save(weights, path)
    elif kind == "python":
        buffer = io.BytesIO()
        torch.save(draw(python_values), buffer)
        path.write_bytes(buffer.getvalue())
    elif kind == "code":
        path.write_bytes(pickle.dumps({"w": RunsCode()}))
    else:
        path.write_bytes(draw(st.binary(max_size=400)))
    return path


@given(data=st.data())
@budget(60)
def test_fuzzed_checkpoints(tmp_path_factory, state, data):
    box = Sandbox(tmp_path_factory.getbasetemp())
    path = data.draw(checkpoints(box, state))
    sets = data.draw(st.lists(st.sampled_from(["planar.layers=2", "planar.layers=0", "planar.steps=1"]), max_size=1))
    argv = ["evaluate", "--model", MODEL, "--checkpoint", path, "--dataset", DATASET, "--profile", "smoke",
            "--metric", "nll", "--out", box.out, "--no-progress"]
    for text in sets:
        argv += ["--set", text]
    code, _, _ = run_command(box, argv)
    event(f"exit {code}")
    assert not (box.cwd / "pwned.txt").exists()


def test_a_fuzzed_checkpoint_in_a_subprocess(tmp_path, cli_env):
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 8 + b"{not json")
    (tmp_path / "code.pt").write_bytes(pickle.dumps(RunsCode()))
    for name in ("junk.safetensors", "code.pt"):
        done = subprocess.run([sys.executable, "-m", "harness", "evaluate", "--model", MODEL, "--checkpoint",
                               str(tmp_path / name), "--dataset", DATASET, "--profile", "smoke", "--metric", "nll",
                               "--out", str(tmp_path / f"out-{name}"), "--no-progress"], env=cli_env,
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode in (0, 1, 2) and "Traceback" not in done.stderr, (name, done.stderr)
        assert done.returncode == 0 or done.stderr.strip(), name
    assert not (tmp_path / "pwned.txt").exists()
