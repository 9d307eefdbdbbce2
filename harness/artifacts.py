"""Trained-model artifacts: what every job that fitted (or loaded) a model leaves in its run directory,
so the model outlives its job (re-measured by ``evaluate``, reused by ``run --resume``, shown by the
report).

Layout, one folder per job, named so a reader finds the model they want without opening it::

    DIR/artifacts/<model>-<dataset>-s<seed>-<first 8 hex digits of the job key>/
      state.safetensors   the fitted model (``Model.export_state``); loads without executing code
      meta.json           model, family, dataset, seed, profile, resolved hyperparameters, dataset
                          provenance, versions, job key, model key, state format, size and sha256
      samples.npy         float32 (SAMPLE_COUNT, *event_shape) in data space, drawn with a generator
                          seeded by the job's seed (SAMPLE_SEED_OFFSET): the same draw every time
                          (models that sample)
      sample_labels.npy   int64 (SAMPLE_COUNT,) labels the samples were drawn for; only for conditional
                          models on labelled data (0..C-1 cycling)
      density.npz         2-D continuous datasets, models with a likelihood: ``x`` (G,), ``y`` (G,),
                          ``log_density`` (G, G) on :func:`density_grid` (row i is y[i], column j is x[j])

The job key in meta.json is the artifact's identity: readers find an artifact by the key it records
(:func:`find_artifact`, :func:`list_artifacts`), never by parsing the folder's name, so folders named
by the bare job key (the layout before named folders) read the same.

The grid is a function of the dataset alone, so every model of a dataset and the true density are
drawn on the same axes.

Writing is atomic: the files go into a hidden temporary folder next to the artifact, which is then
renamed into place, so a reader sees a complete artifact or none (whichever process wrote it). Reading
checks the state file against the size and sha256 in meta.json, and loads it with safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from harness.contracts import Capability, DataKind, UserError

ARTIFACTS_DIR = "artifacts"
STATE_FILE = "state.safetensors"
META_FILE = "meta.json"
SAMPLES_FILE = "samples.npy"
SAMPLE_LABELS_FILE = "sample_labels.npy"
DENSITY_FILE = "density.npz"

SHORT_KEY = 8  # hex digits of the job key in a folder's name
NAME_PART_LIMIT = 60  # characters of the model's and the dataset's name in a folder's name
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

SAMPLE_COUNT = 64  # images: an 8x8 grid; 2-D data: a scatter (reports may draw more from the model)
SAMPLE_SEED_OFFSET = 777
GRID_SIZE = 64


def density_grid(dataset) -> tuple:
    """``(x, y)``: 1-D float64 tensors of :data:`GRID_SIZE` points spanning the dataset's test split (its 0.5% to
    99.5% quantiles per axis, widened by 10% on each side) for 2-D density plots."""
    test = dataset.test.x.double().reshape(len(dataset.test), -1)
    if test.shape[1] != 2:
        raise ValueError(f"density grids are for 2-D data; {dataset.name} has {test.shape[1]} dimensions")
    lo = torch.quantile(test, 0.005, dim=0)
    hi = torch.quantile(test, 0.995, dim=0)
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    return (torch.linspace(float(lo[0]), float(hi[0]), GRID_SIZE, dtype=torch.float64),
            torch.linspace(float(lo[1]), float(hi[1]), GRID_SIZE, dtype=torch.float64))


def grid_points(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The (G*G, 2) points of the grid in row-major order: point i*G + j is (x[j], y[i])."""
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


META_FORMAT = 1
STATE_FORMAT = "safetensors"
TEMP_PREFIX = ".tmp-"


class ArtifactError(UserError):
    """An artifact that is missing, incomplete, truncated or not what it claims to be."""


@dataclass
class Written:
    """What :func:`write_artifact` wrote: the folder, its bytes and the seconds it took."""

    path: Path
    bytes: int
    seconds: float


def artifacts_dir(run_dir) -> Path:
    return Path(run_dir) / ARTIFACTS_DIR


def folder_name(model: str, dataset: str, seed: int, key: str) -> str:
    """``<model>-<dataset>-s<seed>-<short key>``: the artifact folder of a job. Characters unsafe in a
    file name become ``_``; a name never starts with a dot (hidden folders are temporaries)."""
    return f"{_safe(model)}-{_safe(dataset)}-s{int(seed)}-{key[:SHORT_KEY]}"


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", str(name)).lstrip(".")[:NAME_PART_LIMIT] or "_"


def sample_generator(seed: int) -> torch.Generator:
    """The generator of an artifact's sample batch (the formula of ``MetricContext.generator``)."""
    return torch.Generator(device="cpu").manual_seed(int(seed) * 1_000_003 + SAMPLE_SEED_OFFSET)


def sample_labels(model_spec, dataset) -> Optional[torch.Tensor]:
    """The labels the sample batch is drawn for: 0..C-1 cycling for a conditional model on labelled
    data, else None."""
    classes = int(dataset.spec.num_classes)
    if Capability.CONDITIONAL in model_spec.capabilities and classes >= 2:
        return torch.arange(SAMPLE_COUNT, dtype=torch.int64) % classes
    return None


def has_density(model_spec, dataset) -> bool:
    spec = dataset.spec
    return (Capability.LOG_LIKELIHOOD in model_spec.capabilities and spec.kind is DataKind.CONTINUOUS
            and spec.event_shape == (2,))


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- state files


def save_state(path, state: dict) -> None:
    """``{name: tensor}`` to a safetensors file (each tensor copied contiguous, so shared storage is fine)."""
    from safetensors.torch import save_file

    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"export_state must give {{name: tensor}}; not tensors: {', '.join(map(str, bad[:5]))}")
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(path),
              metadata={"format": "harness-model-state"})


def load_state(path) -> dict:
    """A safetensors file as ``{name: tensor}``; :class:`ArtifactError` when it is not a complete one."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError: truncated, corrupt or not safetensors
        raise ArtifactError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from None


# ----------------------------------------------------------------------------- writing


def write_artifact(root, key: str, model, model_spec, dataset, meta: dict) -> Written:
    """Save a fitted model under ``root`` (atomically) in the folder :func:`folder_name` names: its state,
    ``meta`` (model, dataset, seed, ...) completed with the key and the state file's size and hash, the
    seeded sample batch and, for 2-D continuous data, the log-density on the dataset's grid. The
    artifact replaces one of the same key (under either layout's name); a folder of that name that
    records another key is refused with :class:`ArtifactError`, never overwritten."""
    started = time.perf_counter()
    root = Path(root)
    final = root / folder_name(meta["model"], meta["dataset"], meta["seed"], key)
    holder = _recorded_key(final) if final.exists() else None
    if holder not in (None, key):
        raise ArtifactError(f"{final} holds the model of job {holder}, not of job {key}")
    root.mkdir(parents=True, exist_ok=True)
    temp = root / f"{TEMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        save_state(temp / STATE_FILE, model.export_state())
        files = {"state": STATE_FILE}
        if Capability.SAMPLE in model_spec.capabilities:
            labels = sample_labels(model_spec, dataset)
            with torch.no_grad():
                x = model.sample(SAMPLE_COUNT, sample_generator(meta.get("seed", 0)), labels=labels)
            np.save(temp / SAMPLES_FILE, x.detach().cpu().float().numpy())
            files["samples"] = SAMPLES_FILE
            if labels is not None:
                np.save(temp / SAMPLE_LABELS_FILE, labels.numpy())
                files["sample_labels"] = SAMPLE_LABELS_FILE
        if has_density(model_spec, dataset):
            gx, gy = density_grid(dataset)
            points = grid_points(gx, gy).float()
            with torch.no_grad():
                values = model.log_likelihood(points.to(model.device)).values.detach().double().cpu()
            np.savez(temp / DENSITY_FILE, x=gx.numpy(), y=gy.numpy(),
                     log_density=values.reshape(len(gy), len(gx)).numpy())
            files["density"] = DENSITY_FILE
        state_path = temp / STATE_FILE
        full = {**meta, "format": META_FORMAT, "key": key, "files": files,
                "state": {"file": STATE_FILE, "format": STATE_FORMAT, "bytes": state_path.stat().st_size,
                          "sha256": sha256_file(state_path)},
                "sample_count": SAMPLE_COUNT if "samples" in files else 0,
                "sample_seed_offset": SAMPLE_SEED_OFFSET,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (temp / META_FILE).write_text(json.dumps(full, indent=1, sort_keys=True, default=str))
        size = sum(p.stat().st_size for p in temp.iterdir())
        _replace_dir(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    bare = root / key
    if bare != final and _recorded_key(bare) == key:  # the same job's artifact under the bare-key name
        shutil.rmtree(bare, ignore_errors=True)
    return Written(final, size, time.perf_counter() - started)


def _replace_dir(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; an existing ``target`` is moved aside first and then removed."""
    old = None
    if target.exists():
        old = target.with_name(f"{TEMP_PREFIX}old-{target.name}-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temporaries(root) -> int:
    """Delete temporary folders a killed writer left behind; returns how many. Call only while no job of
    this run directory is writing."""
    root = Path(root)
    if not root.is_dir():
        return 0
    stale = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(TEMP_PREFIX)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


# ----------------------------------------------------------------------------- reading


def read_meta(path) -> dict:
    """``meta.json`` of the artifact folder ``path``; :class:`ArtifactError` if it is missing or unreadable."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"artifact {path} is missing")
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"artifact {path} is incomplete: no {META_FILE}") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"artifact {path}: {META_FILE} is unreadable ({exc})") from None
    missing = [k for k in ("model", "dataset", "seed", "profile", "hparams", "provenance", "state") if k not in meta]
    if missing or not isinstance(meta.get("state"), dict):
        raise ArtifactError(f"artifact {path}: {META_FILE} lacks {', '.join(missing) or 'the state record'}")
    return meta


def verify(path, meta: Optional[dict] = None) -> dict:
    """Check the artifact at ``path`` is complete: meta.json readable, the state file present with the
    size and sha256 meta.json records. Returns the meta; :class:`ArtifactError` says what is wrong."""
    path = Path(path)
    meta = meta if meta is not None else read_meta(path)
    record = meta["state"]
    if record.get("format") != STATE_FORMAT:
        raise ArtifactError(f"artifact {path}: state format {record.get('format')!r} is not {STATE_FORMAT!r}; "
                            "only safetensors states are loaded")
    state_path = path / record.get("file", STATE_FILE)
    if not state_path.is_file():
        raise ArtifactError(f"artifact {path} is incomplete: no {state_path.name}")
    size = state_path.stat().st_size
    if size != record.get("bytes"):
        raise ArtifactError(f"artifact {path}: {state_path.name} has {size} bytes, meta.json records "
                            f"{record.get('bytes')} (truncated or replaced)")
    if sha256_file(state_path) != record.get("sha256"):
        raise ArtifactError(f"artifact {path}: {state_path.name} does not match the sha256 in meta.json "
                            "(corrupt or replaced)")
    return meta


def load_artifact(path) -> tuple:
    """(meta, state) of a verified artifact."""
    meta = verify(path)
    return meta, load_state(Path(path) / meta["state"].get("file", STATE_FILE))


def _recorded_key(path: Path) -> Optional[str]:
    """The job key the meta.json of folder ``path`` records; None when there is none to read."""
    try:
        return json.loads((path / META_FILE).read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def find_artifact(root, key: str) -> Optional[Path]:
    """The folder under ``root`` whose meta.json records job key ``key``, or None. Only the folders that
    can hold it are opened: those named for the key (:func:`folder_name`) and the bare key's."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in [root / key, *sorted(root.glob(f"*-{key[:SHORT_KEY]}"))]:
        if path.is_dir() and not path.name.startswith(".") and _recorded_key(path) == key:
            return path
    return None


def list_artifacts(root) -> list:
    """``(folder, meta)`` of every artifact under ``root`` whose meta.json reads (temporaries skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            found.append((path, read_meta(path)))
        except ArtifactError:
            continue
    return found
