"""MNIST and CIFAR-10 from files the user brings, verified before anything is loaded.

Where the files go (``root`` is the data root: ``--data-root``, else ``$HARNESS_DATA_ROOT``, else
``./datasets``)::

    root/mnist/train-images-idx3-ubyte[.gz]    root/cifar10/cifar-10-batches-py/data_batch_1
    root/mnist/train-labels-idx1-ubyte[.gz]    ...                              data_batch_5
    root/mnist/t10k-images-idx3-ubyte[.gz]     root/cifar10/cifar-10-batches-py/test_batch
    root/mnist/t10k-labels-idx1-ubyte[.gz]     (the batches may also sit directly in root/cifar10/)

Each MNIST file may be gzipped or not. CIFAR-10 is the "python version" (extract
``cifar-10-python.tar.gz`` inside ``root/cifar10/``).

Verification, in this order, for every file, before any split is built:

1. Published checksums. The four MNIST ``.gz`` files must match their published SHA-256 digests and
   sizes (the values torchvision and many others pin for the original files). The six CIFAR-10
   batches must match the MD5 digests torchvision publishes for them (no SHA-256 is published for
   the individual batches). A mismatch is refused.
2. Structure. IDX files: magic number (0x0801 labels, 0x0803 images), dimensions (28x28), file
   length exactly header + N*28*28 (or + N), image and label counts equal, labels in 0..9.
   CIFAR batches: a dict with ``b"data"`` uint8 of shape (N, 3072) and ``b"labels"`` (N ints in
   0..9). Pickles are read with an unpickler that only admits numpy arrays, never arbitrary code.
3. Files without a published checksum (uncompressed MNIST files): their SHA-256 is written to
   ``root/manifest.json`` the first time they pass step 2 ("trust on first use"), and a later load
   refuses them if they changed (delete the entry to accept a deliberate replacement).

A missing, truncated or corrupted file raises :class:`harness.UserError` naming the file; no
partially loaded dataset is ever returned.

Splits: the official test set is the test split; the validation split is carved from the official
training set by a permutation from ``numpy.random.default_rng(SPLIT_SEED)`` (MNIST: 1/12 of it,
5,000 of 60,000; CIFAR-10: 1/10, 5,000 of 50,000); train and validation keep the files' order.

Download happens only through :func:`fetch`, run by hand
(``python -m harness datasets fetch mnist|cifar10 [--data-root DIR]``), never implicitly
and never in tests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import shutil
import tarfile
import urllib.request
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from harness import DataKind, DatasetSpec, Split, UserError, hookimpl
from harness.contracts import Splits
from harness.data import resolve_data_root

SPLIT_SEED = 20240602
MANIFEST = "manifest.json"

# --------------------------------------------------------------------------- published checksums

MNIST_FILES = {  # logical name -> file name (without .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 and size in bytes of the original gzipped MNIST files.
MNIST_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"
CIFAR_DIR = "cifar-10-batches-py"
# MD5 of the CIFAR-10 python batches, as published by torchvision.
CIFAR_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- manifest (trust on first use)

def _check_manifest(root: Path, path: Path, record: bool = True) -> None:
    """Refuse ``path`` if its SHA-256 differs from the one recorded in root/manifest.json; record it
    if it is not there yet."""
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object of file -> sha256 (delete it to record the checksums again)")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the checksum manifest {manifest_path}: {exc}") from None
    key = path.relative_to(root).as_posix()
    digest = _digest(path, "sha256")
    known = manifest.get(key)
    if known is not None and known != digest:
        raise UserError(f"{path} changed since its checksum was recorded in {manifest_path} (sha256 {digest[:12]}..., "
                        f"recorded {known[:12]}...); the file may be corrupted. "
                        f"If you replaced it on purpose, delete its entry {key!r} from the manifest.")
    if known is None and record:
        manifest[key] = digest
        try:
            manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        except OSError:  # a read-only data root: verification still happened above
            pass


# --------------------------------------------------------------------------- MNIST (IDX)

IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc} (truncated or corrupted?)") from None


def parse_idx(data: bytes, expect_magic: int, name: str, item_shape: tuple = ()) -> np.ndarray:
    """Parse an IDX file of unsigned bytes strictly: magic number, dimensions and exact length."""
    ndim = 1 + len(item_shape)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{name}: only {len(data)} bytes, shorter than its {header}-byte IDX header (truncated?)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expect_magic:
        raise UserError(f"{name}: IDX magic number 0x{magic:08x}, expected 0x{expect_magic:08x} "
                        f"(not a {'label' if ndim == 1 else 'image'} file, or corrupted)")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if tuple(dims[1:]) != tuple(item_shape):
        raise UserError(f"{name}: item shape {tuple(dims[1:])}, expected {tuple(item_shape)}")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise UserError(f"{name}: {len(data)} bytes, but its header promises {expected} "
                        f"({dims[0]} items){' (truncated)' if len(data) < expected else ''}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _mnist_dir(root: Path) -> Path:
    return root / "mnist"


def _mnist_path(root: Path, base: str) -> Optional[Path]:
    """The file for ``base`` (gzipped preferred), or None if neither form exists."""
    for candidate in (_mnist_dir(root) / (base + ".gz"), _mnist_dir(root) / base):
        if candidate.is_file():
            return candidate
    return None


def check_mnist(root) -> Optional[str]:
    root = resolve_data_root(root)
    missing = [base + "[.gz]" for base in MNIST_FILES.values() if _mnist_path(root, base) is None]
    if not missing:
        return None
    return (f"MNIST files missing from {_mnist_dir(root)}: {', '.join(missing)}. Put the four IDX files "
            f"(gzipped or not) there, or run `python -m harness datasets fetch mnist --data-root {root}`.")


def _check_published_mnist(path: Path) -> bool:
    """Check a gzipped original against its published SHA-256 and size; False if none is published."""
    published = MNIST_GZ_SHA256.get(path.name)
    if published is None:
        return False
    sha, size = published
    actual_size = path.stat().st_size
    if actual_size != size or _digest(path, "sha256") != sha:
        raise UserError(f"{path} does not match the published MNIST file ({size} bytes, sha256 {sha[:12]}...; "
                        f"found {actual_size} bytes): corrupted, truncated or a different file.")
    return True


def read_mnist(root) -> dict:
    """Verify and parse the four MNIST files: {"train_images": (N,28,28) uint8, ...}."""
    root = resolve_data_root(root)
    problem = check_mnist(root)
    if problem:
        raise UserError(problem)
    arrays = {}
    for key, base in MNIST_FILES.items():
        path = _mnist_path(root, base)
        published = _check_published_mnist(path)
        data = _read_maybe_gzip(path)
        if key.endswith("images"):
            arrays[key] = parse_idx(data, IDX_IMAGES_MAGIC, str(path), (28, 28))
        else:
            labels = parse_idx(data, IDX_LABELS_MAGIC, str(path))
            if labels.size and labels.max() > 9:
                raise UserError(f"{path}: label {int(labels.max())} outside 0..9 (corrupted?)")
            arrays[key] = labels
        if not published:
            _check_manifest(root, path)
    for part in ("train", "test"):
        n_img, n_lab = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_img != n_lab:
            raise UserError(f"MNIST {part}: {n_img} images but {n_lab} labels")
    return arrays


# --------------------------------------------------------------------------- CIFAR-10 (python batches)

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global (no code runs)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 protocol-2 pickles spell bytes (str -> latin-1 bytes)
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _cifar_dir(root: Path) -> Path:
    nested = root / "cifar10" / CIFAR_DIR
    return nested if nested.is_dir() else root / "cifar10"


def check_cifar10(root) -> Optional[str]:
    root = resolve_data_root(root)
    folder = _cifar_dir(root)
    missing = [name for name in CIFAR_TRAIN + [CIFAR_TEST] if not (folder / name).is_file()]
    if not missing:
        return None
    return (f"CIFAR-10 batches missing from {root / 'cifar10' / CIFAR_DIR}: {', '.join(missing)}. Extract "
            f"cifar-10-python.tar.gz (the python version) in {root / 'cifar10'}, or run "
            f"`python -m harness datasets fetch cifar10 --data-root {root}`.")


def parse_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one python batch, strictly checked."""
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        labels = np.asarray(batch.get(b"labels")) if isinstance(batch, dict) else None  # ragged: ValueError
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise UserError(f"cannot read CIFAR-10 batch {path}: {type(exc).__name__}: {exc} (truncated or corrupted?)") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"{path} is not a CIFAR-10 python batch (no b'data' / b'labels')")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise UserError(f"{path}: b'data' must be uint8 of shape (N, 3072), found {getattr(data, 'dtype', type(data))} {shape}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar10(root) -> dict:
    """Verify and parse all six batches: {"train_images", "train_labels", "test_images", "test_labels"}."""
    root = resolve_data_root(root)
    problem = check_cifar10(root)
    if problem:
        raise UserError(problem)
    folder = _cifar_dir(root)
    parsed = {}
    for name in CIFAR_TRAIN + [CIFAR_TEST]:
        path = folder / name
        md5 = _digest(path, "md5")
        if md5 != CIFAR_MD5[name]:
            raise UserError(f"{path} does not match the published CIFAR-10 batch (md5 {CIFAR_MD5[name]}, found "
                            f"{md5}): corrupted, truncated or a different file.")
        parsed[name] = parse_cifar_batch(path)
    train = [parsed[name] for name in CIFAR_TRAIN]
    return {
        "train_images": np.concatenate([x for x, _ in train]), "train_labels": np.concatenate([y for _, y in train]),
        "test_images": parsed[CIFAR_TEST][0], "test_labels": parsed[CIFAR_TEST][1],
    }


# --------------------------------------------------------------------------- splits

def carve_splits(arrays: dict, val_fraction: float) -> Splits:
    """Official test split; validation = a seeded random subset of the official training set."""
    n = len(arrays["train_images"])
    n_val = int(round(n * val_fraction))
    val_mask = np.zeros(n, dtype=bool)
    val_mask[np.random.default_rng(SPLIT_SEED).permutation(n)[:n_val]] = True

    def split(x, y):
        return Split(torch.from_numpy(x.astype(np.float32)[:, None] if x.ndim == 3 else x.astype(np.float32)),
                     torch.from_numpy(y.astype(np.int64)))

    return Splits(
        train=split(arrays["train_images"][~val_mask], arrays["train_labels"][~val_mask]),
        val=split(arrays["train_images"][val_mask], arrays["train_labels"][val_mask]),
        test=split(arrays["test_images"], arrays["test_labels"]),
    )


def load_mnist(root=None) -> Splits:
    return carve_splits(read_mnist(root), 1 / 12)


def load_cifar10(root=None) -> Splits:
    return carve_splits(read_cifar10(root), 1 / 10)


# --------------------------------------------------------------------------- explicit download

def fetch(name: str, root=None) -> list:
    """Download ``mnist`` or ``cifar10`` into the data root and verify it. Only ever called on the
    user's explicit request (``python -m harness datasets fetch NAME``). Returns the paths written."""
    root = resolve_data_root(root)
    written = []
    if name == "mnist":
        folder = _mnist_dir(root)
        folder.mkdir(parents=True, exist_ok=True)
        for filename, (sha, _) in MNIST_GZ_SHA256.items():
            target = folder / filename
            if not target.exists() or _digest(target, "sha256") != sha:
                _download(MNIST_URL + filename, target)
                written.append(target)
        read_mnist(root)
    elif name == "cifar10":
        folder = root / "cifar10"
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / "cifar-10-python.tar.gz"
        if not archive.exists() or _digest(archive, "md5") != CIFAR_TGZ_MD5:
            _download(CIFAR_URL, archive)
            written.append(archive)
        if _digest(archive, "md5") != CIFAR_TGZ_MD5:
            raise UserError(f"downloaded {archive} does not match its published md5 {CIFAR_TGZ_MD5}")
        wanted = {f"{CIFAR_DIR}/{n}" for n in CIFAR_TRAIN + [CIFAR_TEST, "batches.meta"]}
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    out = folder / member.name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    written.append(out)
        read_cifar10(root)
    else:
        raise UserError(f"nothing to fetch for {name!r}; fetchable: mnist, cifar10")
    return written


def _download(url: str, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"download of {url} failed: {exc}") from None
    partial.replace(target)


# --------------------------------------------------------------------------- registration

@hookimpl
def harness_register_datasets(register):
    register(DatasetSpec(
        name="mnist", kind=DataKind.DISCRETE, levels=256, event_shape=(1, 28, 28), num_classes=10,
        load=load_mnist, check=check_mnist, fetch=lambda root: fetch("mnist", root), feature_extractor="mnist5k-classifier", tags=("image", "user"),
        description="MNIST from the user's IDX files in <data root>/mnist (gz or not); 55000/5000/10000 "
                    "train/val/test, validation carved from the official training set (seeded).",
    ))
    register(DatasetSpec(
        name="cifar10", kind=DataKind.DISCRETE, levels=256, event_shape=(3, 32, 32), num_classes=10,
        load=load_cifar10, check=check_cifar10, fetch=lambda root: fetch("cifar10", root), feature_extractor="inception-v3", tags=("image", "user"),
        description="CIFAR-10 from the user's python batches in <data root>/cifar10; 45000/5000/10000 "
                    "train/val/test, validation carved from the official training set (seeded).",
    ))
