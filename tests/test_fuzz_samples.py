"""Fuzzed samples for `evaluate-samples`: .npy and .npz arrays of random shapes, dtypes and contents
(NaN, infinities, huge values, strings, objects, empty), damaged array files, and folders of PNG images
of random sizes and modes: every one ends with exit 0, 1 or 2 and a message, never a traceback, and
nothing is written outside --out (tests/fuzzing.py)."""

import io
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.fuzzing import Sandbox, budget, run_command

DTYPES = ["bool", "int8", "uint8", "int16", "int32", "int64", "uint64", "float16", "float32", "float64", "complex64",
          "<U3", "datetime64[s]"]
# The datasets' own shapes (2-D points; digits: 1x8x8 images of 17 levels) come up often, as do random ones.
SHAPES = st.one_of(st.tuples(st.integers(0, 700), st.just(2)), st.tuples(st.integers(0, 40), st.just(64)),
                   st.tuples(st.integers(0, 40), st.just(1), st.just(8), st.just(8)),
                   st.tuples(st.integers(0, 40), st.just(8), st.just(8), st.just(1)),
                   hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6))


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")


@st.composite
def arrays(draw):
    if draw(st.integers(0, 3)) == 0:  # samples that fit a dataset, for the metrics to run on
        n = draw(st.one_of(st.integers(500, 700), st.integers(2, 499)))  # the smoke profile draws 500
        if draw(st.booleans()):
            return draw(hnp.arrays("float32", (n, 2), elements=st.floats(-10, 10, width=32)))
        return draw(hnp.arrays(draw(st.sampled_from(["uint8", "int64", "float64"])), (n, 1, 8, 8),
                               elements=st.integers(0, 16)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(SHAPES)
    if dtype.kind in "iu" and draw(st.booleans()):  # often the digits' levels
        return draw(hnp.arrays(dtype, shape, elements=st.integers(0, 16)))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def sample_files(draw, box):
    """Write a sample file or folder into ``box.inputs``; its path."""
    kind = draw(st.sampled_from(["npy", "npz", "bytes", "truncated", "object", "png", "png"]))
    if kind == "npy":
        path = box.inputs / "samples.npy"
        np.save(path, draw(arrays()))
    elif kind == "npz":
        path = box.inputs / "samples.npz"
        names = draw(st.lists(st.sampled_from(["samples", "x", "arr_0", "y", "s a m"]), max_size=3, unique=True))
        np.savez(path, **{name: draw(arrays()) for name in names})
    elif kind == "bytes":
        path = box.inputs / draw(st.sampled_from(["samples.npy", "samples.npz", "samples.png", "samples"]))
        prefix = draw(st.sampled_from([b"", b"PK\x03\x04", b"\x93NUMPY\x01\x00", b"\x89PNG\r\n\x1a\n"]))
        path.write_bytes(prefix + draw(st.binary(max_size=300)))
    elif kind == "truncated":
        buffer = io.BytesIO()
        np.save(buffer, draw(arrays()))
        path = box.inputs / "samples.npy"
        data = buffer.getvalue()
        path.write_bytes(data[: draw(st.integers(0, len(data)))])
    elif kind == "object":
        path = box.inputs / "samples.npy"
        np.save(path, np.array([{"a": 1}, None, "x"], dtype=object), allow_pickle=True)
    else:
        path = box.inputs / "images"
        path.mkdir()
        for i in range(draw(st.integers(0, 12))):
            write_image(draw, path / draw(st.sampled_from([f"{i:03d}.png", f"{i:03d}.PNG", f"{i}.txt", f"{i}.png"])))
        if draw(st.booleans()):
            (path / "sub.png").mkdir()
    return path


def write_image(draw, path):
    from PIL import Image

    if draw(st.integers(0, 9)) == 0:  # not an image at all
        path.write_bytes(draw(st.binary(max_size=100)))
        return
    mode = draw(st.sampled_from(["L", "L", "RGB", "RGBA", "1", "P", "LA", "I;16"]))
    size = draw(st.one_of(st.just((8, 8)), st.tuples(st.integers(1, 12), st.integers(1, 12))))
    channels = len(Image.new(mode, (1, 1)).getbands())
    values = draw(hnp.arrays("uint8", (size[1], size[0], channels)))
    base = Image.fromarray(values[..., 0] if channels == 1 else values[..., :3] if channels == 3 else values)
    base.convert(mode).save(path, format="PNG")


@given(data=st.data(), dataset=st.sampled_from(["tiny", "digits"]), name=st.sampled_from(["fuzz"] * 6 + ["stdnormal", "a/b",
                                                                                           "x\ny", " ", ".."]))
@budget(60)
def test_fuzzed_samples(tmp_path_factory, data, dataset, name):
    box = Sandbox(tmp_path_factory.getbasetemp())
    path = data.draw(sample_files(box))
    metric = ["--metric", "kid"] if dataset == "digits" else []
    code, _, _ = run_command(box, ["evaluate-samples", path, "--dataset", dataset, "--name", name, "--profile", "smoke",
                                   *metric, "--out", box.out, "--no-progress"])
    event(f"exit {code}")


def test_fuzzed_samples_in_a_subprocess(tmp_path, cli_env):
    """A few damaged inputs outside pytest's process: exit 0, 1 or 2, a message, no traceback."""
    cli_env["HARNESS_PLUGINS"] = "tests.fake_plugins.fakes"
    inputs = {"nan.npy": np.full((600, 2), np.nan)}
    for name, array in inputs.items():
        np.save(tmp_path / name, array)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    for name in [*inputs, "junk.npz"]:
        done = subprocess.run([sys.executable, "-m", "harness", "evaluate-samples", str(tmp_path / name), "--dataset",
                               "tiny", "--name", "fuzz", "--profile", "smoke", "--out", str(tmp_path / f"out-{name}"),
                               "--no-progress"], env=cli_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode in (0, 1, 2) and "Traceback" not in done.stderr, (name, done.stderr)
        assert done.returncode == 0 or done.stderr.strip(), name
