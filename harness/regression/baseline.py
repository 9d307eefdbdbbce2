"""Baseline files: the committed summary of a results set that ``compare`` checks results against.

A **baseline** is a JSON file holding, per (model, dataset, metric identity), the mean over seeds,
its standard error (across seeds when there are several; the measurement's own standard error when
there is one), the number of seeds, unit, direction, kind and estimator, with the declarations of
the outputs it holds; it is stamped with the provenance that must match for numbers to be comparable
(dataset hashes, profile) and with what is only informative (harness/torch versions, date, a hash of
each model's hyperparameters).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from harness.contracts import UserError
from harness.regression.results import Entry, ResultsSet, summarise

BASELINE_FORMAT = "harness-baseline/1"

REFRESH_COMMANDS = ("python -m harness run --all --profile {profile} --seeds 3 --out DIR && "
                    "python -m harness baseline save DIR --to {path}")


class BaselineMismatch(UserError):
    """The baseline was made from other data or another profile: its numbers are not comparable."""


def hparams_hash(hparams) -> str:
    return hashlib.sha256(json.dumps(hparams, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_baseline(results: ResultsSet, created: Optional[str] = None) -> dict:
    """The baseline document of a results set (see :func:`write_baseline`)."""
    entries = summarise(results)
    if not entries:
        raise UserError(f"no ok measurements in {results.source}: nothing to put in a baseline")
    unknown = sorted({e.id for e in entries if e.higher_is_better is None})
    if unknown:
        raise UserError(f"direction (higher or lower is better) unknown for {', '.join(unknown)}; "
                        "save the results directory rather than its CSV")
    models = {}
    for e in entries:
        if e.model not in models:
            info = {"family": e.family}
            if e.model in results.hparams:
                info["hparams"] = results.hparams[e.model]
                info["hparams_hash"] = hparams_hash(results.hparams[e.model])
            models[e.model] = info
    used = sorted({e.dataset for e in entries})
    return {
        "format": BASELINE_FORMAT,
        "created": created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": results.source,
        "profile": results.profile(),
        "seeds": results.seeds,
        "versions": dict(sorted(results.versions.items())),
        "datasets": {d: results.datasets.get(d) for d in used},
        "models": dict(sorted(models.items())),
        "outputs": {name: out.as_dict() for name, out in sorted(results.outputs.items())
                    if name in {e.metric for e in entries}},
        "entries": [_entry_dict(e) for e in sorted(entries, key=lambda e: (e.dataset, e.model, e.id))],
    }


def _entry_dict(e: Entry) -> dict:
    d = asdict(e)
    return {k: d[k] for k in ("dataset", "model", "id", "metric", "unit", "estimator", "higher_is_better", "kind",
                              "mean", "stderr", "n_seeds", "seeds")}


def write_baseline(baseline: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(baseline, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_baseline(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"no baseline at {path}; make one with `python -m harness baseline save RESULTS --to {path}`")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise UserError(f"{path} is not a harness baseline (format {BASELINE_FORMAT!r} expected)")
    for key in ("profile", "entries", "datasets"):
        if key not in doc:
            raise UserError(f"baseline {path} has no {key!r}")
    return doc


def baseline_entries(doc: dict) -> list:
    return [Entry(model=e["model"], dataset=e["dataset"], id=e["id"], metric=e.get("metric", e["id"]),
                  family=doc.get("models", {}).get(e["model"], {}).get("family", ""), unit=e.get("unit", ""),
                  estimator=e.get("estimator", ""), higher_is_better=e["higher_is_better"], mean=float(e["mean"]),
                  stderr=e.get("stderr"), n_seeds=int(e.get("n_seeds", 1)), seeds=list(e.get("seeds", [])),
                  kind=e.get("kind", ""))
            for e in doc["entries"]]


