"""Feature extractors for the fidelity metrics, registered with the harness and with torch-fidelity.

Feature extractors for the fidelity metrics (FID, KID, precision/recall), registered both with the
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
  The classifiers, their weights and the sha256 check of every load:
  :mod:`harness_plugins.metrics.classifiers`; the command that reproduces the weights:
  ``python -m harness_plugins.metrics.train_classifier <name>`` (fixed seeds, one thread).
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

import functools
import hashlib
import os
from pathlib import Path
from typing import Optional

import torch

from harness import hookimpl
from harness.contracts import FeatureExtractorSpec
from harness_plugins.metrics.classifiers import (RECIPES, TRAIN_COMMAND, WeightsChecksumError, classifier_weights_path,
                                                 load_classifier, sha256_file)

INCEPTION_ENV = "HARNESS_INCEPTION_WEIGHTS"
INCEPTION_FILE_NAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_SHA256_PREFIX = "6726825d"  # the torch.hub convention: the file name carries its hash prefix
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"

FIDELITY_PREFIX = "harness-"  # names registered in torch-fidelity's registry
RAW_LAYER = "flat"
PENULTIMATE_LAYER = "penultimate"
LOGITS_LAYER = "logits"


def _fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


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
            return f"{name} weights are missing ({path}); reproduce them with `{TRAIN_COMMAND} {name}`"
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

