"""Fuzzed data files for the user_images datasets: MNIST IDX files (headers with random magic numbers
and dimensions, payloads short, exact or long, labels out of range, gzipped or not, random bytes) given
to `datasets check mnist`, and CIFAR-10 python batches (pickles of random structures, arrays of random
dtypes and shapes, globals that would run code, random bytes) to `datasets check cifar10` and to the
batch parser itself (the command refuses anything but the published files by their md5 first). Every
command ends with exit 0, 1 or 2 and a message, never a traceback, and writes nothing but the data
root's checksum manifest; the parser gives arrays or a UserError."""

import gzip
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness import UserError
from harness_plugins.datasets.user_images import CIFAR_TEST, CIFAR_TRAIN, MNIST_FILES, parse_cifar_batch
from tests.fuzzing import Sandbox, budget, run_command


@st.composite
def idx_files(draw, images: bool, n: int, clean: bool):
    """Bytes of an IDX file of ``n`` items: well formed with random content when ``clean``; otherwise
    mostly well formed, sometimes not."""
    magic = 0x803 if images else 0x801
    if clean:
        size = n * 28 * 28 if images else n
        values = draw(hnp.arrays("uint8", size, elements=st.integers(0, 255 if images else 9)))
        return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in [n] + ([28, 28] if images else [])) \
            + values.tobytes()
    if draw(st.integers(0, 5)) == 0:
        magic = draw(st.sampled_from([0x801, 0x803, 0x802, 0, 0xFFFFFFFF]))
    dims = [n] + ([28, 28] if images else [])
    if draw(st.integers(0, 5)) == 0:
        dims = draw(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=3))
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    size = n * 28 * 28 if images else n
    payload = draw(hnp.arrays("uint8", size, elements=st.integers(0, 255 if images else 12))).tobytes()
    cut = draw(st.sampled_from(["exact", "exact", "short", "long"]))
    if cut == "short":
        payload = payload[: draw(st.integers(0, max(0, len(payload) - 1)))]
    elif cut == "long":
        payload += draw(st.binary(min_size=1, max_size=20))
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    return header + payload


@st.composite
def mnist_roots(draw, root):
    folder = root / "mnist"
    folder.mkdir(parents=True)
    clean = draw(st.integers(0, 2)) == 0  # four files that fit together, the content random
    counts = {"train": draw(st.integers(0, 30)), "t10k": draw(st.integers(0, 30))}
    for base in MNIST_FILES.values():
        form = "raw" if clean else draw(st.sampled_from(["raw", "raw", "raw", "gz", "missing", "badgz"]))
        data = draw(idx_files("images" in base, counts[base.split("-")[0]], clean))
        if form == "raw":
            (folder / base).write_bytes(data)
        elif form == "gz":
            (folder / f"{base}.gz").write_bytes(gzip.compress(data))
        elif form == "badgz":
            (folder / f"{base}.gz").write_bytes(gzip.compress(data)[: draw(st.integers(0, 30))])
    if draw(st.integers(0, 4)) == 0:  # a checksum manifest of its own
        (root / "manifest.json").write_text(draw(st.sampled_from(["{", "[]", '{"mnist/x": 1}', "null", "{}"])))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


cifar_values = st.recursive(
    st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.text(max_size=4),
              hnp.arrays(st.sampled_from(["uint8", "int64", "float32", "bool"]), hnp.array_shapes(max_dims=2,
                                                                                                 max_side=4))),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(st.binary(max_size=6), st.text(max_size=6)),
                                                                inner, max_size=3),
    max_leaves=6)


@st.composite
def cifar_batches(draw):
    """Bytes of a CIFAR-10 python batch: mostly the right structure with fuzzed arrays, sometimes not."""
    kind = draw(st.sampled_from(["batch", "batch", "batch", "value", "code", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "code":
        return pickle.dumps({b"data": RunsCode()})
    if kind == "value":
        return pickle.dumps(draw(cifar_values), protocol=draw(st.integers(0, 5)))
    n = draw(st.integers(0, 6))
    data = draw(st.one_of(hnp.arrays("uint8", (n, 3072)),
                          hnp.arrays(st.sampled_from(["uint8", "int16", "float32"]),
                                     st.tuples(st.integers(0, 4), st.sampled_from([3072, 3071, 1024])))))
    labels = draw(st.one_of(st.lists(st.integers(-2, 11), min_size=n, max_size=n), st.lists(st.integers(0, 9)),
                            cifar_values))
    batch = {b"data": data, b"labels": labels}
    if draw(st.integers(0, 5)) == 0:
        batch.pop(draw(st.sampled_from([b"data", b"labels"])))
    return pickle.dumps(batch, protocol=draw(st.integers(2, 5)))


@given(data=st.data())
@budget(60)
def test_fuzzed_mnist_files(tmp_path_factory, data):
    box = Sandbox(tmp_path_factory.getbasetemp())
    root = box.inputs / "data"
    data.draw(mnist_roots(root))
    code, _, _ = run_command(box, ["datasets", "check", "mnist", "--data-root", root],
                             allowed={"inputs/data/manifest.json"})
    event(f"exit {code}")


@given(data=st.data())
@budget(15)
def test_fuzzed_cifar_batches_through_the_command(tmp_path_factory, data):
    box = Sandbox(tmp_path_factory.getbasetemp())
    folder = box.inputs / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR_TRAIN + [CIFAR_TEST]:
        if data.draw(st.integers(0, 6)):
            (folder / name).write_bytes(data.draw(cifar_batches()))
    code, _, _ = run_command(box, ["datasets", "check", "cifar10", "--data-root", box.inputs / "data"])
    event(f"exit {code}")
    assert not (box.cwd / "pwned.txt").exists()


@given(raw=cifar_batches())
@budget(200)
def test_fuzzed_cifar_batches_through_the_parser(tmp_path_factory, raw):
    folder = Sandbox(tmp_path_factory.getbasetemp()).inputs
    path = folder / "data_batch_1"
    path.write_bytes(raw)
    here = os.getcwd()
    os.chdir(folder)
    try:
        images, labels = parse_cifar_batch(path)
    except UserError:
        event("refused")
        return
    finally:
        os.chdir(here)
        assert not (folder / "pwned.txt").exists()
    event("parsed")
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32)
    assert labels.dtype == np.int64 and labels.shape == (len(images),) and (labels.size == 0 or labels.max() <= 9)


def test_fuzzed_data_files_in_a_subprocess(tmp_path, cli_env):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for base in MNIST_FILES.values():
        (folder / base).write_bytes(struct.pack(">II", 0x803, 2**31) + b"\x00" * 7)
    done = subprocess.run([sys.executable, "-m", "harness", "datasets", "check", "mnist", "--data-root",
                           str(tmp_path / "data")], env=cli_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.strip(), done.stderr
