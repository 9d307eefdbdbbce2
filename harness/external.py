"""Samples from any generator, measured like a model (``harness evaluate-samples``).

The samples come as a ``.npy`` / ``.npz`` array in data space or, for image datasets, a folder of PNG
images. :func:`read_samples` checks them against the dataset (shape, dtype, finite values, integer
levels 0..K-1 for discrete data, 0/1 for binary data; PNGs all of one size, the dataset's, mapped to its
levels) and refuses anything else with a :class:`harness.UserError` naming what is wrong.

:class:`ExternalSamples` is the adapter that lets the normal metric loop run on them: a model of family
``external`` whose ``sample(n, generator)`` hands the samples out in order. One draw (one generator
object, also when a metric draws in chunks) starts at the first sample and continues where its previous
chunk ended; a draw that needs more samples than were given fails, saying how many it needed.
:class:`SamplesPlugin` registers the adapter under the user's label, so jobs, workers and reports
treat it as any other model. There is no likelihood and nothing to time: only sample-based quality
metrics apply (:func:`harness.applicable_metrics.metrics_for`).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from harness import hookimpl
from harness.contracts import Capability, DataKind, Model, ModelSpec, UserError

FAMILY = "external"
ARRAY_SUFFIXES = (".npy", ".npz")
NPZ_KEY = "samples"  # the array read from an .npz holding several
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # 8-bit modes; 16-bit and float images are refused


class SamplesRefused(UserError):
    """Samples that do not fit the dataset (or cannot be read)."""


# ----------------------------------------------------------------------------- reading and checking


def read_samples(path, spec) -> torch.Tensor:
    """Float32 samples (N, *event_shape) in the dataset's data space, from an array file or a PNG folder."""
    path = Path(path)
    if path.is_dir():
        if not spec.is_image:
            raise SamplesRefused(f"{path} is a folder; PNG folders are for image datasets and {spec.name} has "
                                 f"event shape {spec.event_shape}: give a .npy or .npz array")
        return check_array(read_png_folder(path, spec), spec, str(path))
    if not path.is_file():
        raise SamplesRefused(f"{path} does not exist")
    if path.suffix not in ARRAY_SUFFIXES:
        raise SamplesRefused(f"{path}: give a .npy or .npz array, or a folder of PNG images (image datasets)")
    return check_array(_load_array(path), spec, str(path))


def _load_array(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle, which is never allowed
        raise SamplesRefused(f"{path} cannot be read without unpickling Python objects ({exc}); save a numeric "
                             "array") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise SamplesRefused(f"{path} is not a readable numpy file ({exc})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        if len(keys) == 1:
            key = keys[0]
        elif NPZ_KEY in keys:
            key = NPZ_KEY
        else:
            raise SamplesRefused(f"{path} holds arrays {', '.join(keys) or '(none)'}; name the samples "
                                 f"{NPZ_KEY!r} or save just one array")
        try:
            return loaded[key]
        except ValueError as exc:
            raise SamplesRefused(f"{path}[{key}] cannot be read without unpickling Python objects ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a damaged member of the archive
            raise SamplesRefused(f"{path}[{key}] is not readable ({type(exc).__name__}: {exc})") from None


def check_array(arr: np.ndarray, spec, source: str) -> torch.Tensor:
    """``arr`` as float32 (N, *event_shape) after checking it against ``spec``; channel-last images
    (N, H, W, C) and flat rows (N, D) are reshaped. :class:`SamplesRefused` says what does not fit."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise SamplesRefused(f"{source}: samples must be numbers (bool, int or float), not {arr.dtype}")
    arr = _shaped(arr, spec, source)
    if arr.shape[0] < 2:
        raise SamplesRefused(f"{source}: {arr.shape[0]} sample(s); metrics need at least 2")
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise SamplesRefused(f"{source}: {int((~np.isfinite(values)).sum())} value(s) are NaN or infinite")
    if spec.kind is not DataKind.CONTINUOUS:
        levels = int(spec.levels)
        what = "0 or 1" if spec.kind is DataKind.BINARY else f"integer levels 0..{levels - 1}"
        off_grid = values != np.round(values)
        out_of_range = (values < 0) | (values > levels - 1)
        if off_grid.any() or out_of_range.any():
            bad = values[off_grid | out_of_range]
            raise SamplesRefused(
                f"{source}: {spec.name} is {spec.kind.value} data, so every value must be {what}; "
                f"{bad.size} value(s) are not (e.g. {bad.flat[0]:g}; the samples span {values.min():g} to "
                f"{values.max():g}). Map the samples to the dataset's levels first")
    return torch.from_numpy(values.astype(np.float32))


def _shaped(arr: np.ndarray, spec, source: str) -> np.ndarray:
    shape = tuple(spec.event_shape)
    if arr.ndim >= 1 and tuple(arr.shape[1:]) == shape:
        return arr
    if arr.ndim == 2 and arr.shape[1] == spec.dim:
        return arr.reshape(arr.shape[0], *shape)
    if spec.is_image:
        c, h, w = shape
        if arr.ndim == 4 and tuple(arr.shape[1:]) == (h, w, c):
            return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
        if c == 1 and arr.ndim == 3 and tuple(arr.shape[1:]) == (h, w):
            return arr[:, None]
    raise SamplesRefused(f"{source}: samples have shape {tuple(arr.shape)}; {spec.name} needs (N, "
                         f"{', '.join(map(str, shape))})" + (f" or (N, {spec.dim})" if len(shape) > 1 else ""))


def read_png_folder(folder: Path, spec) -> np.ndarray:
    """(N, C, H, W) dataset levels from every ``*.png`` in ``folder`` (sorted by name): 8-bit pixel values
    p in 0..255 become round(p (K - 1) / 255), the inverse of writing level l as round(255 l / (K - 1))."""
    from PIL import Image

    if spec.kind is DataKind.CONTINUOUS:
        raise SamplesRefused(f"{spec.name} is continuous; PNG pixels are levels, so give a .npy array instead")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not files:
        raise SamplesRefused(f"{folder} holds no .png files")
    c, h, w = spec.event_shape
    images, sizes = [], {}
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
                sizes.setdefault(img.size, []).append(path.name)
                images.append(_pixels(img, c, path))
        except SamplesRefused:
            raise
        except Exception as exc:  # PIL's UnidentifiedImageError, truncated files
            raise SamplesRefused(f"{path} is not a readable PNG image ({exc})") from None
    if len(sizes) > 1:
        listing = "; ".join(f"{width}x{height}: {len(names)} (e.g. {names[0]})"
                            for (width, height), names in sorted(sizes.items()))
        raise SamplesRefused(f"{folder}: the images are not all one size ({listing}); {spec.name} images are "
                             f"{w}x{h}")
    (width, height), = sizes
    if (width, height) != (w, h):
        raise SamplesRefused(f"{folder}: the images are {width}x{height}; {spec.name} images are {w}x{h}")
    pixels = np.stack(images).astype(np.float64)  # (N, C, H, W) in 0..255
    return np.round(pixels * (int(spec.levels) - 1) / 255.0)


def _pixels(img, channels: int, path: Path) -> np.ndarray:
    if img.mode not in PNG_MODES:
        raise SamplesRefused(f"{path}: mode {img.mode}; only 8-bit greyscale or colour PNGs are read")
    if channels == 3:
        return np.asarray(img.convert("RGB")).transpose(2, 0, 1)
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB"))
        if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
            raise SamplesRefused(f"{path} is a colour image; the dataset's images are greyscale")
        return rgb[None, ..., 0]
    return np.asarray(img.convert("L"))[None]


# ----------------------------------------------------------------------------- the adapter


class NotEnoughSamples(ValueError):
    pass


class ExternalSamples(Model):
    """Hands out the given samples in order (see the module doc); it neither fits nor gives a likelihood."""

    def __init__(self, samples: torch.Tensor, source: str):
        self.samples = samples
        self.source = source
        self._draw: Optional[torch.Generator] = None
        self._used = 0

    def fit(self, train, val, ctx) -> None:
        raise RuntimeError("external samples are not fitted")

    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        if labels is not None:
            raise ValueError("external samples are unconditional: they cannot be drawn for given labels")
        if generator is not self._draw:  # a new draw starts at the first sample
            self._draw, self._used = generator, 0
        start, stop = self._used, self._used + int(n)
        if stop > len(self.samples):
            raise NotEnoughSamples(f"{self.source} holds {len(self.samples)} samples and this metric draws more (at "
                                   f"least {stop}): give more, or use a profile that draws fewer (see `python -m "
                                   "harness evaluate-samples --help`)")
        self._used = stop
        return self.samples[start:stop].clone()

    def export_state(self) -> dict:
        return {}


class SamplesPlugin:
    """Registers the adapter for one set of samples as model ``label`` (family ``external``)."""

    def __init__(self, label: str, kind: DataKind, samples: torch.Tensor, source: str):
        self.label, self.kind, self.samples, self.source = label, DataKind(kind), samples, source

    def build(self, dataset_spec, hparams) -> ExternalSamples:
        return ExternalSamples(self.samples, self.source)

    @hookimpl
    def harness_register_models(self, register):
        register(ModelSpec(name=self.label, family=FAMILY, factory=self.build, data_kinds=[self.kind],
                           capabilities=[Capability.SAMPLE],
                           description=f"samples from {self.source} (another generator)"))
