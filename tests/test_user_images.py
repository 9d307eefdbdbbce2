"""User-supplied MNIST (IDX, gz or not) and CIFAR-10 (python batches): small files written here in
the exact formats; missing files name themselves; truncated, corrupted or changed files are refused
with harness.UserError and never half-loaded; the CLI exits 2 without a traceback."""

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import harness_plugins.datasets.user_images as user_images
from harness import UserError

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 24, 6


# --------------------------------------------------------------------------- writers (the formats)

def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0x00 0x00, type 0x08 (unsigned byte), number of dimensions, big-endian int32 sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def mnist_arrays(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def write_mnist(root: Path, arrays: dict, gz: bool) -> dict:
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, base in user_images.MNIST_FILES.items():
        data = idx_bytes(arrays[key])
        path = folder / (base + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        paths[key] = path
    return paths


@pytest.fixture
def publish_mnist(monkeypatch):
    """Make the test's own .gz files the 'published' ones (the real digests are of the real files)."""

    def publish(paths: dict):
        table = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size) for p in paths.values()}
        monkeypatch.setattr(user_images, "MNIST_GZ_SHA256", table)

    return publish


def cifar_batches(seed=0, n=7) -> dict:
    rng = np.random.default_rng(seed)
    return {name: {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"labels": rng.integers(0, 10, n).tolist(), b"filenames": [b"x.png"] * n}
            for name in user_images.CIFAR_TRAIN + [user_images.CIFAR_TEST]}


def write_cifar(root: Path, batches: dict, monkeypatch, nested=True) -> Path:
    folder = root / "cifar10" / (user_images.CIFAR_DIR if nested else "")
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, batch in batches.items():
        data = pickle.dumps(batch, protocol=2)
        (folder / name).write_bytes(data)
        digests[name] = hashlib.md5(data).hexdigest()
    monkeypatch.setattr(user_images, "CIFAR_MD5", digests)
    return folder


# --------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_loads_exactly_what_the_files_hold(tmp_path, gz, publish_mnist):
    arrays = mnist_arrays()
    paths = write_mnist(tmp_path, arrays, gz)
    if gz:
        publish_mnist(paths)
    assert user_images.check_mnist(tmp_path) is None
    splits = user_images.load_mnist(tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (22, 2, 6)  # val = 1/12 of train
    assert splits.train.x.shape == (22, 1, 28, 28) and splits.train.x.dtype == torch.float32
    assert np.array_equal(splits.test.x[:, 0].numpy(), arrays["test_images"].astype(np.float32))
    assert np.array_equal(splits.test.y.numpy(), arrays["test_labels"].astype(np.int64))
    # train + val is the official training set, in file order, the val rows chosen by the fixed seed
    val_mask = np.zeros(N_TRAIN, bool)
    val_mask[np.random.default_rng(user_images.SPLIT_SEED).permutation(N_TRAIN)[:2]] = True
    assert np.array_equal(splits.val.x[:, 0].numpy(), arrays["train_images"][val_mask].astype(np.float32))
    assert np.array_equal(splits.train.y.numpy(), arrays["train_labels"][~val_mask].astype(np.int64))
    # manifest: only files without a published checksum are recorded
    manifest = tmp_path / "manifest.json"
    assert manifest.exists() != gz


def test_missing_files_are_named_with_where_they_go(tmp_path, publish_mnist):
    paths = write_mnist(tmp_path, mnist_arrays(), gz=True)
    paths["test_labels"].unlink()
    paths["train_images"].unlink()
    message = user_images.check_mnist(tmp_path)
    assert "t10k-labels-idx1-ubyte" in message and "train-images-idx3-ubyte" in message
    assert "train-labels" not in message and str(tmp_path / "mnist") in message
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        user_images.load_mnist(tmp_path)
    assert "data_batch_1" in user_images.check_cifar10(tmp_path)


def test_the_real_published_checksums_refuse_other_gz_files(tmp_path):
    write_mnist(tmp_path, mnist_arrays(), gz=True)
    with pytest.raises(UserError, match="does not match the published MNIST file"):
        user_images.load_mnist(tmp_path)


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) - 37]))
    elif how == "magic":
        data[3] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "extra":
        path.write_bytes(bytes(data) + b"\0")


@pytest.mark.parametrize("key,how,message", [
    ("train_images", "truncate", "truncated"),
    ("train_labels", "magic", "magic number"),
    ("test_images", "extra", "header promises"),
])
def test_corrupted_plain_idx_files_are_refused(tmp_path, key, how, message):
    paths = write_mnist(tmp_path, mnist_arrays(), gz=False)
    corrupt(paths[key], how)
    with pytest.raises(UserError, match=message):
        user_images.load_mnist(tmp_path)


def test_truncated_gzip_is_refused_even_with_a_matching_checksum(tmp_path, publish_mnist):
    paths = write_mnist(tmp_path, mnist_arrays(), gz=True)
    corrupt(paths["train_images"], "truncate")
    publish_mnist(paths)  # checksum of the truncated file: only the gzip stream can tell
    with pytest.raises(UserError, match="truncated or corrupted"):
        user_images.load_mnist(tmp_path)


def test_labels_out_of_range_and_count_mismatch_are_refused(tmp_path):
    arrays = mnist_arrays()
    arrays["test_labels"][2] = 11
    write_mnist(tmp_path, arrays, gz=False)
    with pytest.raises(UserError, match="outside 0..9"):
        user_images.load_mnist(tmp_path)
    arrays = mnist_arrays()
    arrays["test_labels"] = arrays["test_labels"][:-1]
    write_mnist(tmp_path / "b", arrays, gz=False)
    with pytest.raises(UserError, match="6 images but 5 labels"):
        user_images.load_mnist(tmp_path / "b")


def test_a_file_that_changed_after_its_checksum_was_recorded_is_refused(tmp_path):
    paths = write_mnist(tmp_path, mnist_arrays(), gz=False)
    user_images.load_mnist(tmp_path)  # records the sha256 of the four files
    data = bytearray(paths["test_images"].read_bytes())
    data[100] ^= 0xFF  # still a structurally valid IDX file
    paths["test_images"].write_bytes(bytes(data))
    with pytest.raises(UserError, match="changed since its checksum was recorded"):
        user_images.load_mnist(tmp_path)


# --------------------------------------------------------------------------- CIFAR-10

@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_loads_exactly_what_the_batches_hold(tmp_path, monkeypatch, nested):
    batches = cifar_batches()
    write_cifar(tmp_path, batches, monkeypatch, nested)
    assert user_images.check_cifar10(tmp_path) is None
    splits = user_images.load_cifar10(tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (31, 4, 7)  # val = 1/10 of 35
    assert splits.test.x.shape == (7, 3, 32, 32) and splits.test.x.dtype == torch.float32
    test = batches["test_batch"]
    assert np.array_equal(splits.test.x.numpy(), test[b"data"].reshape(7, 3, 32, 32).astype(np.float32))
    assert splits.test.y.tolist() == test[b"labels"]
    all_train = np.concatenate([batches[n][b"data"] for n in user_images.CIFAR_TRAIN]).reshape(-1, 3, 32, 32)
    together = torch.cat([splits.train.x, splits.val.x]).numpy()
    assert sorted(map(bytes, together.astype(np.uint8))) == sorted(map(bytes, all_train))


def test_cifar_checksum_mismatch_truncation_and_bad_contents_are_refused(tmp_path, monkeypatch):
    folder = write_cifar(tmp_path, cifar_batches(), monkeypatch)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(UserError, match="does not match the published CIFAR-10 batch"):
        user_images.load_cifar10(tmp_path)
    # the same truncated file, had its checksum matched, fails to unpickle
    with pytest.raises(UserError, match="truncated or corrupted"):
        user_images.parse_cifar_batch(path)
    bad = cifar_batches()
    bad["test_batch"][b"data"] = bad["test_batch"][b"data"][:, :100]
    write_cifar(tmp_path / "b", bad, monkeypatch)
    with pytest.raises(UserError, match=r"shape \(N, 3072\)"):
        user_images.load_cifar10(tmp_path / "b")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_unpickler_admits_arrays_only(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": _RunsCode(), b"labels": []}, protocol=2))
    with pytest.raises(UserError, match="refusing to unpickle"):
        user_images.parse_cifar_batch(path)


# --------------------------------------------------------------------------- through the CLI

def test_cli_missing_user_dataset_exits_2_without_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("HARNESS_DATA_ROOT", None)
    done = subprocess.run([sys.executable, "-m", "harness", "datasets", "mnist", "--data-root", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "train-images-idx3-ubyte" in done.stderr and str(tmp_path / "mnist") in done.stderr


def test_cli_corrupted_user_dataset_exits_2_with_the_reason(tmp_path, capsys):
    from harness.cli import main

    paths = write_mnist(tmp_path, mnist_arrays(), gz=False)
    corrupt(paths["train_labels"], "truncate")
    assert main(["datasets", "mnist", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train-labels-idx1-ubyte" in err and "truncated" in err


def test_cli_env_var_sets_the_data_root(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    write_mnist(tmp_path, mnist_arrays(), gz=False)
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path))
    assert main(["datasets", "mnist", "--format", "json"]) == 0
    assert '"train": 22' in capsys.readouterr().out


def test_cli_full_listing_marks_a_refused_dataset_and_exits_2(tmp_path, capsys):
    from harness.cli import main

    paths = write_mnist(tmp_path, mnist_arrays(), gz=False)
    corrupt(paths["test_images"], "magic")
    assert main(["datasets", "--data-root", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "| mnist " in captured.out and "refused" in captured.out
    assert "- mnist: " in captured.out and "magic number" in captured.out
    assert "- cifar10: CIFAR-10 batches missing" in captured.out
    assert "refused: mnist" in captured.err
