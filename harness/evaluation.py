"""Planning jobs that measure models the job does not train (``harness evaluate``, ``evaluate-samples``).

Three sources, each checked completely before anything is written, so bad input is a
:class:`harness.UserError` (exit 2) with nothing half-done:

- the saved models of a results directory (:func:`jobs_from_run`): every job that recorded an artifact,
  the newest one per model key; a missing, incomplete or altered artifact refuses the whole directory;
- a weights file for a registered model (:func:`checkpoint_job`), loaded safely
  (:mod:`harness.checkpoints`) and tried on the model before the job is planned;
- samples from any generator (:func:`samples_job`), read and checked by :mod:`harness.external`.

The jobs then run like any other (:class:`harness.runner.Runner`): the job runner restores the model
instead of fitting it, and the job's details say where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from harness import artifacts
from harness.applicable_metrics import metrics_for
from harness.contracts import Capability, UserError
from harness.dataset_cache import DatasetCache
from harness.hparams import OverrideSet
from harness.jobs import Job, Origin, SkipKind, check_seeds, job_key, model_key


def _keyed(host, job: Job, mspec) -> Job:
    versions = (mspec.version, host.plugin_version("models", mspec.name)) if mspec is not None else ("", "")
    job.key, job.model_key = job_key(job, *versions), model_key(job, *versions)
    return job


def _metric_ids(host, mspec, dspec, metrics, origin) -> tuple:
    chosen, _ = metrics_for(host, mspec, dspec, metrics, origin)
    return tuple(f"{m.name}:{m.version}" for m in chosen)


# ----------------------------------------------------------------------------- saved models of a run


def saved_models(run_dir) -> list:
    """``(job row, artifact folder, meta)`` for the newest recorded job of each saved model of ``run_dir``;
    :class:`UserError` when there are none, or when any recorded artifact is missing or broken."""
    from harness.store import Store

    run_dir = Path(run_dir)
    store = Store(run_dir, read_only=True)
    try:
        rows = store.jobs()
    finally:
        store.close()
    recorded = [row for row in rows if isinstance(row["details"].get("artifact"), dict)]
    if not recorded:
        raise UserError(f"{run_dir} has no saved models (it was run with --no-artifacts, or no job fitted a "
                        "model); run it again without --no-artifacts")
    newest: dict = {}
    problems = []
    for row in recorded:  # oldest first, so a later job of the same model replaces an earlier one
        path = run_dir / row["details"]["artifact"]["path"]
        try:
            meta = artifacts.verify(path)
        except artifacts.ArtifactError as exc:
            problems.append(f"{row['model']}/{row['dataset']}/seed{row['seed']}: {exc}")
            continue
        newest[meta.get("model_key") or row["key"]] = (row, path, meta)
    if problems:
        raise UserError("cannot evaluate " + str(run_dir) + ": " + "; ".join(problems))
    return list(newest.values())


def jobs_from_run(host, run_dir, metrics: Optional[list], data_root) -> list:
    """A job per saved model of ``run_dir``, to be measured with ``metrics`` (None: every compatible one).
    A model or dataset that is no longer installed, data whose provenance changed or hyperparameters the
    model no longer accepts make that job skipped, with the reason."""
    datasets = DatasetCache(Path(data_root))
    jobs = []
    for row, path, meta in saved_models(run_dir):
        job = Job(meta["model"], meta.get("family", row["family"]), meta["dataset"], int(meta["seed"]),
                  meta["profile"], dict(meta["hparams"]), meta["provenance"], origin=Origin.ARTIFACT,
                  origin_path=str(Path(path).resolve()), weights=meta["state"]["sha256"])
        reason, mspec = None, None
        try:
            mspec, dspec = host.model(job.model), host.dataset(job.dataset)
            job.family = mspec.family
            current = datasets.get(dspec).provenance
            if current != job.provenance:
                reason = (f"dataset {job.dataset} changed since the model was trained (provenance {current[:12]}, "
                          f"the model's {job.provenance[:12]})")
            else:
                stored = [(k, v, f"{path}/{artifacts.META_FILE}") for k, v in job.hparams.items()]
                job.hparams = mspec.resolve_hparams(job.profile, dspec, stored)
                job.metrics = _metric_ids(host, mspec, dspec, metrics, Origin.ARTIFACT)
        except UserError as exc:
            reason = str(exc)
        if reason is not None:
            job.skip_reason, job.skip_kind = reason, SkipKind.OTHER
        jobs.append(_keyed(host, job, mspec))
    return jobs


# ----------------------------------------------------------------------------- a weights file


def checkpoint_job(host, model: str, dataset: str, checkpoint, profile: str, seed: int, overrides: list,
                   metrics: Optional[list], data_root, device="cpu") -> Job:
    """The job that measures ``checkpoint`` as model ``model`` on ``dataset``; the file is loaded and
    restored into the model here first, so one that does not fit is refused before anything runs."""
    from harness.checkpoints import load_weights

    mspec, dspec = host.model(model), host.dataset(dataset)
    reason = mspec.incompatibility(dspec)
    if reason:
        raise UserError(f"{model} cannot run on {dataset}: {reason}")
    data = DatasetCache(Path(data_root)).get(dspec)
    hparams = mspec.resolve_hparams(profile, dspec, OverrideSet(overrides, host.registry.models).for_job(mspec, dataset))
    state, digest = load_weights(checkpoint)
    try_restore(mspec, data, hparams, state, device, source=str(checkpoint))
    (seed,) = check_seeds([seed], "--seed")
    job = Job(mspec.name, mspec.family, dspec.name, seed, profile, hparams, data.provenance,
              origin=Origin.CHECKPOINT, origin_path=str(Path(checkpoint).resolve()), weights=digest)
    job.metrics = _metric_ids(host, mspec, dspec, metrics, Origin.CHECKPOINT)
    return _keyed(host, job, mspec)


def try_restore(mspec, data, hparams: dict, state: dict, device="cpu", source: str = "the weights") -> None:
    """Build the model, restore ``state`` and draw and score a couple of examples; :class:`UserError`
    saying what does not fit (names, shapes, dtypes) otherwise."""
    spec = data.spec
    what = f"{source} does not fit model {mspec.name} on {spec.name} with these hyperparameters"
    torch.manual_seed(0)
    model = mspec.factory(spec, dict(hparams))
    model.to(device)
    names = _name_mismatch(model, state)
    if names:
        raise UserError(f"{what}: {names}")
    try:
        model.restore_state(state)
    except Exception as exc:  # KeyError (names), RuntimeError (shapes in load_state_dict), ValueError, TypeError
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise UserError(f"{what}: {' '.join(str(message).split())}") from None
    try:
        with torch.no_grad():
            if Capability.SAMPLE in mspec.capabilities:
                labels = torch.zeros(2, dtype=torch.int64) if Capability.CONDITIONAL in mspec.capabilities \
                    and spec.num_classes >= 2 else None
                x = model.sample(2, torch.Generator().manual_seed(0), labels=labels)
                if tuple(x.shape) != (2, *spec.event_shape):
                    raise ValueError(f"sample(2) gave shape {tuple(x.shape)}, expected {(2, *spec.event_shape)}")
            if Capability.LOG_LIKELIHOOD in mspec.capabilities:
                values = model.log_likelihood(data.test.x[:2].to(model.device)).values
                if tuple(values.shape) != (2,):
                    raise ValueError(f"log_likelihood gave shape {tuple(values.shape)} for 2 examples")
    except Exception as exc:
        raise UserError(f"{what}: after loading, {type(exc).__name__}: {exc}") from None


def _name_mismatch(model, state: dict) -> Optional[str]:
    """What is missing from or extra in ``state`` against the names an unfitted model exports (when it
    exports any before fitting: modules do; tensors set by ``fit`` are only known afterwards)."""
    try:
        expected = set(model.export_state())
    except Exception:
        return None
    if not expected:
        return None

    def listed(names):
        names = sorted(names)
        return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")

    missing, extra = expected - set(state), set(state) - expected
    parts = ([f"missing {listed(missing)}"] if missing else []) + ([f"unexpected {listed(extra)}"] if extra else [])
    return "; ".join(parts) + f" (the model's names: {listed(expected)})" if parts else None


# ----------------------------------------------------------------------------- external samples


def samples_job(host, path, dataset: str, label: str, profile: str, metrics: Optional[list], data_root) -> Job:
    """Register ``path``'s samples as model ``label`` (family ``external``) and plan their job."""
    from harness.artifacts import sha256_file
    from harness.external import SamplesPlugin, read_samples
    from harness.host import PluginError

    dspec = host.dataset(dataset)
    if label in host.registry.models:
        raise UserError(f"--name {label!r} is a registered model; choose another label for the samples")
    data = DatasetCache(Path(data_root)).get(dspec)
    samples = read_samples(path, dspec)
    path = Path(path).resolve()
    digest = sha256_file(path) if path.is_file() else _folder_digest(path)
    try:
        host.add_plugin(SamplesPlugin(label, dspec.kind, samples, str(path)), f"external-samples:{label}")
        mspec = host.model(label)
    except PluginError as exc:
        raise UserError(str(exc)) from None
    job = Job(label, mspec.family, dspec.name, 0, profile, {}, data.provenance, origin=Origin.SAMPLES,
              origin_path=str(path), weights=digest)
    job.metrics = _metric_ids(host, mspec, dspec, metrics, Origin.SAMPLES)
    if not job.metrics:
        job.skip_reason, job.skip_kind = "no sample-based metric applies to these samples", SkipKind.OTHER
    return _keyed(host, job, mspec)


def _folder_digest(folder: Path) -> str:
    import hashlib

    from harness.artifacts import sha256_file

    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() == ".png":
            h.update(p.name.encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()
