"""The small CNN classifiers behind the ``digits-classifier`` / ``mnist5k-classifier`` extractors:
their recipes, their network, and their weights files, checked by sha256 on every load.

Weights are package data in ``weights/<name>.pt``; their sha256 is checked against
:data:`CLASSIFIER_SHA256` and a mismatch raises :class:`WeightsChecksumError`. Reproduce them with
``python -m harness_plugins.metrics.train_classifier <name>`` (fixed seeds, one thread).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TRAIN_COMMAND = "python -m harness_plugins.metrics.train_classifier"  # followed by the classifier's name

# sha256 of the committed classifier weights (harness_plugins/metrics/weights/README.md lists the same values).
CLASSIFIER_SHA256 = {
    "digits-classifier": "f4b27ccebf97af7bfebe5c5e8f5093acf10636067b8073baf7ded04eaa1b7add",
    "mnist5k-classifier": "3e8f488dfdbff6b1307816cb5dc47c1228f80eb40e8f08aecdf1e4dcdf5d907f",
}


class WeightsChecksumError(RuntimeError):
    """A weights file whose sha256 differs from the recorded one (tampered, truncated or retrained)."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ClassifierRecipe:
    """What a classifier looks like and how it is trained (the reproduce command reads this)."""

    dataset: str  # the grey-level dataset whose training split it learns
    input_shape: tuple
    channels: tuple  # conv 3x3 (padding 1) -> ReLU -> max-pool 2, one block per entry
    feature_dim: int  # width of the penultimate layer (the features)
    num_classes: int = 10
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


RECIPES = {
    "digits-classifier": ClassifierRecipe(dataset="digits", input_shape=(1, 8, 8), channels=(32, 64),
                                          feature_dim=64, epochs=40),
    "mnist5k-classifier": ClassifierRecipe(dataset="mnist5k", input_shape=(1, 28, 28), channels=(16, 32, 64),
                                           feature_dim=128, epochs=20),
}


class SmallCNN(nn.Module):
    """Conv blocks, a penultimate fully connected layer (the features) and a linear classifier.

    Input: images in [0, 1] of shape (N, *input_shape).
    """

    def __init__(self, input_shape, channels, feature_dim, num_classes=10):
        super().__init__()
        c, h, w = input_shape
        blocks = []
        for out in channels:
            blocks += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        self.conv = nn.Sequential(*blocks, nn.Flatten())
        self.penultimate = nn.Linear(c * h * w, feature_dim)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)
        # Fixed per-feature standardisation, set once after training from the training split.
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_scale", torch.ones(feature_dim))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.penultimate(self.conv(x))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits). The features are the penultimate layer's pre-activations (before its
        ReLU: full rank, where ReLU outputs have dead, constant-zero units), standardised by the
        fixed training-split mean and scale, so that KID's polynomial kernel sees values of order 1."""
        pre = self.pre_activations(x)
        features = (pre - self.feature_mean) / self.feature_scale
        return features, self.head(self.dropout(torch.relu(pre)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]


def recipe_network(recipe: ClassifierRecipe) -> SmallCNN:
    return SmallCNN(recipe.input_shape, recipe.channels, recipe.feature_dim, recipe.num_classes)


def classifier_weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.pt"


def load_classifier(name: str, path=None, expected_sha256: Optional[str] = None) -> tuple[SmallCNN, dict]:
    """The classifier ``name`` from its weights file (the packaged one unless ``path``), in eval mode,
    with the file's metadata. The file's sha256 must equal ``expected_sha256`` (default: the recorded
    :data:`CLASSIFIER_SHA256`); otherwise :class:`WeightsChecksumError`."""
    path = Path(path) if path is not None else classifier_weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name} weights not found at {path}; reproduce them with `{TRAIN_COMMAND} {name}`")
    expected = expected_sha256 if expected_sha256 is not None else CLASSIFIER_SHA256[name]
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsChecksumError(
            f"{name} weights {path} have sha256 {actual}, expected {expected}: the file was changed or corrupted. "
            f"Restore it from the repository, or retrain with `{TRAIN_COMMAND} {name}` "
            f"and record the new checksum in CLASSIFIER_SHA256 (harness_plugins/metrics/classifiers.py) and "
            f"harness_plugins/metrics/weights/README.md."
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    recipe = RECIPES[name]
    net = recipe_network(recipe)
    net.load_state_dict(blob["state_dict"])
    net.requires_grad_(False)
    net.eval()
    return net, dict(blob.get("metadata", {}), sha256=actual)
