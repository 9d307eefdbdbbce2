"""Feature extractors for the fidelity metrics (FID, KID, precision/recall), registered both with the
harness (``harness_register_feature_extractors``) and with torch-fidelity's own feature-extractor
registry, so that torch-fidelity computes every feature and every metric.

Extractors (harness name -> torch-fidelity name, the input it takes, the feature layer):

- ``raw`` -> ``harness-raw``: the data flattened to float64 (N, D); for low-dimensional data, where
  the Frechet distance is taken on the data itself.
- ``digits-classifier`` / ``mnist5k-classifier`` -> ``harness-digits-classifier`` /
  ``harness-mnist5k-classifier``: a small CNN trained on that dataset's own training split (grey
  levels and their binarisation, so the binary views ``digits-binary`` / ``mnist5k-binary`` are in
  its training domain). Input: images scaled to [0, 1] by dividing by ``levels - 1`` of the dataset
  they come from (``build`` reads ``dataset.spec.levels``), so 0..16, 0..255 and 0/1 data all land on
  the same scale. Features: the penultimate layer's pre-activations, standardised per feature by
  fixed training-split statistics stored with the weights; ``classify`` gives the logits.
  Weights are package data in ``weights/<name>.pt``; their sha256 is checked on every load against
  :data:`CLASSIFIER_SHA256` and a mismatch raises :class:`WeightsChecksumError`.
  Reproduce them with ``python -m harness_plugins.metrics.extractors train <name>`` (fixed seeds, one thread).
- ``inception-v3`` -> torch-fidelity's ``inception-v3-compat`` (feature layer ``2048``), for RGB
  images, only when its weights file is on disk: ``$HARNESS_INCEPTION_WEIGHTS`` or
  ``<data_root>/weights/pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity's name
  ``weights-inception-2015-12-05-6726825d.pth`` is accepted too). The local path is always passed to
  torch-fidelity (``feature_extractor_weights_path``), so it never downloads. Input: uint8 (N, 3, H, W);
  grey images are repeated over three channels, other level counts rescaled to 0..255.

torch-fidelity is imported lazily (it pulls in torchvision): registering the harness specs costs
nothing until an extractor is built.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from harness import hookimpl
from harness.contracts import FeatureExtractorSpec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# sha256 of the committed classifier weights (harness_plugins/metrics/weights/README.md lists the same values).
CLASSIFIER_SHA256 = {
    "digits-classifier": "f4b27ccebf97af7bfebe5c5e8f5093acf10636067b8073baf7ded04eaa1b7add",
    "mnist5k-classifier": "3e8f488dfdbff6b1307816cb5dc47c1228f80eb40e8f08aecdf1e4dcdf5d907f",
}

INCEPTION_ENV = "HARNESS_INCEPTION_WEIGHTS"
INCEPTION_FILE_NAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_SHA256_PREFIX = "6726825d"  # the torch.hub convention: the file name carries its hash prefix
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"

FIDELITY_PREFIX = "harness-"  # names registered in torch-fidelity's registry
RAW_LAYER = "flat"
PENULTIMATE_LAYER = "penultimate"
LOGITS_LAYER = "logits"


class WeightsChecksumError(RuntimeError):
    """A weights file whose sha256 differs from the recorded one (tampered, truncated or retrained)."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


# ----------------------------------------------------------------------------- the classifiers


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
        raise FileNotFoundError(f"{name} weights not found at {path}; reproduce them with "
                                f"`python -m harness_plugins.metrics.extractors train {name}`")
    expected = expected_sha256 if expected_sha256 is not None else CLASSIFIER_SHA256[name]
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsChecksumError(
            f"{name} weights {path} have sha256 {actual}, expected {expected}: the file was changed or corrupted. "
            f"Restore it from the repository, or retrain with `python -m harness_plugins.metrics.extractors train {name}` "
            f"and record the new checksum in CLASSIFIER_SHA256 and harness_plugins/metrics/weights/README.md."
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    recipe = RECIPES[name]
    net = recipe_network(recipe)
    net.load_state_dict(blob["state_dict"])
    net.requires_grad_(False)
    net.eval()
    return net, dict(blob.get("metadata", {}), sha256=actual)


# ----------------------------------------------------------------------------- torch-fidelity side


class RowsDataset(torch.utils.data.Dataset):
    """A tensor seen by torch-fidelity as a Dataset of its rows (torch-fidelity wants bare tensors)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i):
        return self.x[i]


@functools.lru_cache(maxsize=None)
def torch_fidelity_classes() -> dict:
    """Define the torch-fidelity feature extractors and register them in its registry (once).

    Returns {torch-fidelity name: class}. The classes subclass ``torch_fidelity.FeatureExtractorBase``
    and are built by torch-fidelity itself (``create_feature_extractor`` / ``calculate_metrics`` with
    ``feature_extractor=<name>``).
    """
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    class RawFeatures(torch_fidelity.FeatureExtractorBase):
        """The input flattened to float64: (N, ...) -> (N, D)."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)

        @staticmethod
        def get_provided_features_list():
            return (RAW_LAYER,)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return RAW_LAYER

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 2)

        def forward(self, x):
            return (x.reshape(x.shape[0], -1).to(torch.float64),)

    class ClassifierFeatures(torch_fidelity.FeatureExtractorBase):
        """A harness classifier (weights checked by sha256); input images in [0, 1]."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            self.net, self.metadata = load_classifier(name[len(FIDELITY_PREFIX):], feature_extractor_weights_path)

        @staticmethod
        def get_provided_features_list():
            return PENULTIMATE_LAYER, LOGITS_LAYER

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return LOGITS_LAYER if metric == "isc" else PENULTIMATE_LAYER

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 1, 8, 8)

        def forward(self, x):
            device = next(self.net.parameters()).device
            features, logits = self.net.features_and_logits(x.to(device=device, dtype=torch.float32))
            out = {PENULTIMATE_LAYER: features, LOGITS_LAYER: logits}
            return tuple(out[name] for name in self.features_list)

    classes = {FIDELITY_PREFIX + "raw": RawFeatures}
    classes.update({FIDELITY_PREFIX + name: ClassifierFeatures for name in RECIPES})
    for name, cls in classes.items():
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            torch_fidelity.register_feature_extractor(name, cls)
    return classes


class TorchFidelityExtractor:
    """What ``FeatureExtractorSpec.build`` returns: a torch-fidelity feature extractor plus the
    conversion from data space to the input it takes.

    ``features(x)`` runs torch-fidelity's own feature loop (``get_featuresdict_from_dataset``) on
    ``torch_fidelity_input(x)`` and returns the ``feature_layer`` features, (N, F) on the CPU.
    ``torch_fidelity_name`` / ``torch_fidelity_kwargs`` are what ``torch_fidelity.calculate_metrics``
    needs to compute the same features itself.
    """

    def __init__(self, name, torch_fidelity_name, feature_layer, to_input, fingerprint, device,
                 torch_fidelity_kwargs=None, batch_size=500, weights_sha256=None):
        from torch_fidelity.utils import create_feature_extractor

        torch_fidelity_classes()
        self.name = name
        self.torch_fidelity_name = torch_fidelity_name
        self.feature_layer = feature_layer
        self.torch_fidelity_kwargs = dict(torch_fidelity_kwargs or {})
        self.fingerprint = fingerprint
        self.weights_sha256 = weights_sha256
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._to_input = to_input
        self.module = create_feature_extractor(torch_fidelity_name, [feature_layer], cuda=False, verbose=False,
                                               **self.torch_fidelity_kwargs).to(self.device)

    def torch_fidelity_input(self, x: torch.Tensor) -> torch.Tensor:
        """Data-space samples (N, *event_shape) -> the tensor torch-fidelity's extractor takes."""
        return self._to_input(x.detach().cpu())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        from torch_fidelity.utils import get_featuresdict_from_dataset

        rows = RowsDataset(self.torch_fidelity_input(x))
        out = get_featuresdict_from_dataset(rows, self.module, self.batch_size, cuda=self.device.type == "cuda",
                                            save_cpu_ram=True, verbose=False)
        return out[self.feature_layer]


class ClassifierExtractor(TorchFidelityExtractor):
    """A classifier extractor: ``features`` are the penultimate activations, ``classify`` the logits."""

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        net = self.module.net
        logits = []
        with torch.no_grad():
            for batch in self.torch_fidelity_input(x).split(self.batch_size):
                logits.append(net(batch.to(self.device)).cpu())
        return torch.cat(logits)


# ----------------------------------------------------------------------------- builders


def _levels(spec) -> int:
    if not spec.levels or spec.levels < 2:
        raise ValueError(f"dataset {spec.name!r} is {spec.kind.value}, but this extractor needs integer levels")
    return int(spec.levels)


def build_raw(dataset, device) -> TorchFidelityExtractor:
    return TorchFidelityExtractor(
        name="raw", torch_fidelity_name=FIDELITY_PREFIX + "raw", feature_layer=RAW_LAYER,
        to_input=lambda x: x.reshape(x.shape[0], -1), fingerprint=_fingerprint("raw", 1), device=device,
        batch_size=10000,
    )


def _classifier_builder(name: str):
    recipe = RECIPES[name]

    def build(dataset, device) -> ClassifierExtractor:
        spec = dataset.spec
        if tuple(spec.event_shape) != tuple(recipe.input_shape):
            raise ValueError(f"{name} takes images of shape {recipe.input_shape}; "
                             f"{spec.name} has shape {tuple(spec.event_shape)}")
        scale = _levels(spec) - 1
        extractor = ClassifierExtractor(
            name=name, torch_fidelity_name=FIDELITY_PREFIX + name, feature_layer=PENULTIMATE_LAYER,
            to_input=lambda x: x.float() / scale, fingerprint="", device=device,
        )
        extractor.weights_sha256 = extractor.module.metadata["sha256"]
        extractor.fingerprint = _fingerprint(name, extractor.weights_sha256, f"scale=1/{scale}")
        return extractor

    return build


def _classifier_check(name: str):
    def check(data_root=None) -> Optional[str]:
        path = classifier_weights_path(name)
        if not path.is_file():
            return (f"{name} weights are missing ({path}); reproduce them with "
                    f"`python -m harness_plugins.metrics.extractors train {name}`")
        return None

    return check


def inception_weights_path(data_root=None) -> Optional[Path]:
    """$HARNESS_INCEPTION_WEIGHTS if set, else the first of INCEPTION_FILE_NAMES in <data_root>/weights
    that exists, else None."""
    env = os.environ.get(INCEPTION_ENV)
    if env:
        return Path(env).expanduser()
    if data_root is None:
        return None
    for file_name in INCEPTION_FILE_NAMES:
        candidate = Path(data_root) / "weights" / file_name
        if candidate.is_file():
            return candidate
    return None


def check_inception(data_root=None) -> Optional[str]:
    path = inception_weights_path(data_root)
    if path is not None and path.is_file():
        return None
    where = (f"{INCEPTION_ENV}={path} names no file" if path is not None else
             f"no {INCEPTION_FILE_NAMES[0]} in {Path(data_root) / 'weights' if data_root is not None else '<data_root>/weights'}")
    return (f"Inception-v3 weights not found ({where}); the harness never downloads them. Fetch {INCEPTION_URL} "
            f"on a machine with internet and put it at <data_root>/weights/{INCEPTION_FILE_NAMES[0]}, "
            f"or point {INCEPTION_ENV} at the file.")


@functools.lru_cache(maxsize=8)
def _verified_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = sha256_file(path)
    if not digest.startswith(INCEPTION_SHA256_PREFIX):
        raise WeightsChecksumError(f"Inception-v3 weights {path} have sha256 {digest}, which does not start with "
                                   f"{INCEPTION_SHA256_PREFIX} as torch-fidelity's file does; use that file")
    return digest


def to_uint8_rgb(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Images with levels 0..levels-1 (N, 1 or 3, H, W) -> uint8 (N, 3, H, W) on 0..255."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"Inception-v3 takes images (N, 1 or 3, H, W), not {tuple(x.shape)}")
    x = x.float()
    if levels != 256:
        x = x * (255.0 / (levels - 1))
    x = x.round().clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


def build_inception(dataset, device, data_root=None) -> TorchFidelityExtractor:
    reason = check_inception(data_root)
    if reason is not None:
        raise FileNotFoundError(reason)
    path = inception_weights_path(data_root)
    stat = path.stat()
    digest = _verified_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    levels = _levels(dataset.spec)
    return TorchFidelityExtractor(
        name="inception-v3", torch_fidelity_name="inception-v3-compat", feature_layer="2048",
        to_input=lambda x: to_uint8_rgb(x, levels), fingerprint=_fingerprint("inception-v3", digest, levels),
        device=device, torch_fidelity_kwargs={"feature_extractor_weights_path": str(path)}, batch_size=64,
        weights_sha256=digest,
    )


@hookimpl
def harness_register_feature_extractors(register):
    register(FeatureExtractorSpec(
        name="raw", build=build_raw,
        description="The data flattened (float64): Frechet distance on the coordinates of low-dimensional data.",
    ))
    for name, recipe in RECIPES.items():
        register(FeatureExtractorSpec(
            name=name, build=_classifier_builder(name), check=_classifier_check(name),
            description=f"Small CNN trained on {recipe.dataset}'s training split (grey and binarised); "
                        f"features: its {recipe.feature_dim}-d penultimate pre-activations; inputs scaled by 1/(levels-1).",
        ))
    register(FeatureExtractorSpec(
        name="inception-v3", build=build_inception, check=check_inception,
        description="torch-fidelity's Inception-v3 (2048-d pool features) for RGB images; needs its weights file "
                    f"(${INCEPTION_ENV} or <data_root>/weights/{INCEPTION_FILE_NAMES[0]}); never downloads.",
    ))


# ----------------------------------------------------------------------------- training (the reproduce command)


def _unit_images(split, levels: int) -> torch.Tensor:
    return split.x.float() / (levels - 1)


def _accuracy(net: SmallCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = torch.cat([net(b).argmax(1) for b in x.split(1000)])
    return float((pred == y).double().mean())


def train_classifier(name: str, out_path=None, data_root=None) -> dict:
    """Train classifier ``name`` from scratch, deterministically (fixed seeds, one thread), on the
    training split of its dataset: every image twice, as grey levels scaled to [0, 1] and binarised at
    1/2 (exactly the ``-binary`` view of the same split). Writes the weights file and returns its
    metadata (accuracies on validation and test splits, grey and binarised, and the file's sha256)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG state untouched
            return _train_classifier(name, out_path, data_root)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train_classifier(name: str, out_path, data_root) -> dict:
    from harness.data import provenance_hash
    from harness.host import get_host

    recipe = RECIPES[name]
    torch.manual_seed(recipe.seed)
    spec = get_host().dataset(recipe.dataset)
    splits = spec.load(data_root)
    levels = int(spec.levels)

    def views(split):
        grey = _unit_images(split, levels)
        return grey, (grey >= 0.5).float()

    train_grey, train_binary = views(splits.train)
    x = torch.cat([train_grey, train_binary])
    y = torch.cat([splits.train.y, splits.train.y])

    net = recipe_network(recipe)
    optimiser = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    order = torch.Generator().manual_seed(recipe.seed)
    for _ in range(recipe.epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=order).split(recipe.batch_size):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        pre = torch.cat([net.pre_activations(batch) for batch in x.split(1000)])
    net.feature_mean.copy_(pre.mean(0))
    net.feature_scale.copy_(pre.std(0).clamp_min(1e-6))

    accuracy = {}
    for split_name in ("val", "test"):
        split = getattr(splits, split_name)
        grey, binary = views(split)
        accuracy[f"{split_name}_grey"] = _accuracy(net, grey, split.y)
        accuracy[f"{split_name}_binary"] = _accuracy(net, binary, split.y)
    metadata = {
        "name": name,
        "dataset": recipe.dataset,
        "train_data_sha256": provenance_hash(splits),
        "recipe": repr(recipe),
        "command": f"python -m harness_plugins.metrics.extractors train {name}",
        "torch": str(torch.__version__),
        **{f"accuracy_{k}": v for k, v in accuracy.items()},
    }
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    out_path = Path(out_path) if out_path is not None else classifier_weights_path(name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_path.parent, delete=False) as tmp:
        torch.save({"format": 1, "state_dict": state, "metadata": metadata}, tmp)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, out_path)
    return dict(metadata, sha256=sha256_file(out_path), path=str(out_path),
                parameters=sum(p.numel() for p in net.parameters()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness_plugins.metrics.extractors",
                                     description="Reproduce the classifier weights used as feature extractors.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a classifier deterministically and write its weights file")
    train.add_argument("name", choices=sorted(RECIPES))
    train.add_argument("--out", help="output file (default: the packaged weights/<name>.pt)")
    train.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    info = train_classifier(args.name, args.out, args.data_root)
    for key, value in info.items():
        print(f"{key}: {value}")
    recorded = CLASSIFIER_SHA256.get(args.name)
    if info["sha256"] != recorded:
        print(f"note: sha256 differs from the recorded {recorded or '(none)'}; update CLASSIFIER_SHA256 and "
              f"harness_plugins/metrics/weights/README.md if these weights are to be used", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
