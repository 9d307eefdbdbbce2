"""Baseline files: the committed summary of a results set that ``compare`` checks results against.

A **baseline** is a JSON file holding, per (model, dataset, metric identity), the mean over seeds,
its standard error (across seeds when there are several; the measurement's own standard error when
there is one), the number of seeds, unit, direction, kind, estimator and protocol (the settings that
change what the number means; absent from a baseline saved before protocols were recorded), with the
declarations of the outputs it holds; it is stamped with the provenance that must match for numbers to be comparable
(dataset hashes, profile) and with what is only informative (harness/torch versions, date, a hash of
each model's hyperparameters), and it records which plugin registered each model, dataset and output.

Quality rows are in ``entries``. Speed rows are in ``machines``, one section per machine fingerprint
id (:mod:`harness.machine`): the fingerprint, the calibration and that machine's speed entries.
``baseline save --merge`` (:func:`merge_speed`) adds or replaces one machine's section of an existing
baseline and leaves its quality rows alone. :func:`check_match` refuses results made from other data or
with another profile (:class:`BaselineMismatch`).

A file holds no per-example values, so ``compare`` against it is unpaired. ``compare --baseline DIR``
takes a results directory instead (:func:`baseline_source`): its summary is the baseline, and rows whose
jobs kept per-example values on both sides are judged paired.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Mapping, Optional

from harness.comparison import Entry, ResultsSet, is_speed, results_machine, summarise
from harness.contracts import SPEED, Output, UserError
from harness.machine import describe
from harness.regression import baseline_schema

BASELINE_FORMAT = "harness-baseline/2"
OLD_FORMATS = ("harness-baseline/1",)  # read, with their speed rows in a section of an unknown machine
UNKNOWN_MACHINE = "unknown"

REFRESH_COMMANDS = ("python -m harness run --all --profile {profile} --seeds 3 --out DIR && "
                    "python -m harness baseline save DIR --to {path}")


class BaselineMismatch(UserError):
    """The baseline was made from other data or another profile: its numbers are not comparable."""


def check_match(doc: dict, results: ResultsSet, baseline_path: str = "the baseline") -> None:
    """Raise :class:`BaselineMismatch` when the profile differs or a dataset both hold has another hash."""
    problems = []
    profiles = results.profiles
    if profiles != [doc["profile"]]:
        problems.append(f"profile: the baseline was made with {doc['profile']!r}, the results with "
                        f"{', '.join(repr(p) for p in profiles) or 'none'}")
    for name, base_hash in sorted(doc["datasets"].items()):
        cur_hash = results.datasets.get(name)
        if base_hash and cur_hash and base_hash != cur_hash:
            problems.append(f"dataset {name!r}: baseline hash {base_hash[:12]}, results hash {cur_hash[:12]} "
                            "(the data differ)")
    if problems:
        refresh = REFRESH_COMMANDS.format(profile=profiles[0] if len(profiles) == 1 else doc["profile"],
                                          path=baseline_path)
        raise BaselineMismatch(
            f"baseline {baseline_path} does not match the results in {results.source}:\n  - "
            + "\n  - ".join(problems)
            + "\nNumbers made from other data or another profile are not comparable, so nothing was compared.\n"
              "If the change is deliberate, refresh the baseline:\n  " + refresh
            + "\nand commit it with a message that says why the numbers moved. Otherwise compare results made "
              f"with the baseline's profile ({doc['profile']}) and data.")


def hparams_hash(hparams) -> str:
    return hashlib.sha256(json.dumps(hparams, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checked_entries(results: ResultsSet) -> list:
    entries = summarise(results)
    if not entries:
        raise UserError(f"no ok measurements in {results.source}: nothing to put in a baseline")
    unknown = sorted({e.id for e in entries if e.higher_is_better is None})
    if unknown:
        raise UserError(f"direction (higher or lower is better) unknown for {', '.join(unknown)}; "
                        "save the results directory rather than its CSV")
    return entries


def _models(results: ResultsSet, entries) -> dict:
    models = {}
    for e in entries:
        if e.model not in models:
            info = {"family": e.family}
            if e.model in results.hparams:
                info["hparams"] = results.hparams[e.model]
                info["hparams_hash"] = hparams_hash(results.hparams[e.model])
            models[e.model] = info
    return models


def _owners(results: ResultsSet, entries) -> dict:
    """Which plugin registered each model, dataset and output the entries use (what the runs recorded)."""
    used = {"models": {e.model for e in entries}, "datasets": {e.dataset for e in entries},
            "outputs": {e.metric for e in entries}}
    return {kind: {name: plugin for name, plugin in sorted(results.owners.get(kind, {}).items()) if name in names}
            for kind, names in used.items()}


def _entry_dicts(entries, outputs: Mapping) -> list:
    """The entries as the file keeps them, each with its output's declared kind ("" when undeclared)."""
    keys = ("dataset", "model", "id", "metric", "unit", "estimator", "higher_is_better")
    rows = []
    for e in sorted(entries, key=lambda e: (e.dataset, e.model, e.id)):
        out = outputs.get(e.metric)
        row = {**{k: getattr(e, k) for k in keys}, "kind": out.kind if out is not None else "",
               "mean": e.mean, "stderr": e.stderr, "n_seeds": e.n_seeds, "seeds": e.seeds}
        if e.protocol is not None:
            row["protocol"] = dict(sorted(e.protocol.items()))
        rows.append(row)
    return rows


def _speed(results: ResultsSet, entries) -> list:
    """The entries whose outputs declare them speed figures."""
    return [e for e in entries if is_speed(results.outputs.get(e.metric))]


def speed_section(results: ResultsSet, entries, created: Optional[str] = None) -> tuple:
    """(machine id, section) for the speed entries of a results set made on one machine.

    Results that record no machine (a CSV) give a section of an unknown machine, which ``compare``
    never sets against a machine's figures. Raises UserError when the results come from several machines."""
    mine = results_machine(results)
    if len(mine.ids) > 1:
        raise UserError(f"results in {results.source} come from {len(mine.ids)} machines ({', '.join(mine.ids)}); "
                        "a baseline's speed section holds one machine's figures: run again into a fresh directory, on "
                        "one kind of machine (on a Ray cluster, --resources pins a run to one class of nodes)")
    speed = _speed(results, entries)
    section = {
        "description": describe(mine.fingerprint) if mine.id else "unknown machine (the results record none)",
        "fingerprint": mine.fingerprint,
        "calibration": mine.calibration,
        "created": created or _now(),
        "source": results.source,
        "seeds": sorted({s for e in speed for s in e.seeds}),
        "entries": _entry_dicts(speed, results.outputs),
    }
    return (mine.id or UNKNOWN_MACHINE), section


def make_baseline(results: ResultsSet, created: Optional[str] = None) -> dict:
    """The baseline document of a results set (see :func:`write_baseline`)."""
    entries = _checked_entries(results)
    created = created or _now()
    speed = _speed(results, entries)
    quality = [e for e in entries if e not in speed]
    machines = {}
    if speed:
        machine, section = speed_section(results, entries, created)
        machines[machine] = section
    used = sorted({e.dataset for e in entries})
    return {
        "format": BASELINE_FORMAT,
        "created": created,
        "source": results.source,
        "profile": results.profile(),
        "seeds": results.seeds,
        "versions": dict(sorted(results.versions.items())),
        "datasets": {d: results.datasets.get(d) for d in used},
        "models": dict(sorted(_models(results, entries).items())),
        "owners": _owners(results, entries),
        "outputs": {name: out.as_dict() for name, out in sorted(results.outputs.items())
                    if name in {e.metric for e in entries}},
        "entries": _entry_dicts(quality, results.outputs),
        "machines": machines,
    }


def merge_speed(doc: dict, results: ResultsSet, baseline_path: str = "the baseline") -> tuple:
    """Add (or replace) the results' machine's speed section in ``doc``; quality rows stay as they are.

    Returns (the new document, machine id, whether a section of that machine was replaced). The results
    must match the baseline (profile, dataset hashes) and come from one machine that they record."""
    check_match(doc, results, baseline_path)
    entries = _checked_entries(results)
    speed = _speed(results, entries)
    if not speed:
        raise UserError(f"no speed measurements in {results.source}: nothing to merge into {baseline_path}")
    machine, section = speed_section(results, entries)
    if machine == UNKNOWN_MACHINE:
        raise UserError(f"the results in {results.source} record no machine (a CSV, or a store written before runs "
                        "recorded their machine): a merged speed section must name its machine")
    new = json.loads(json.dumps(doc))
    replaced = machine in new.get("machines", {})
    new.setdefault("machines", {})[machine] = section
    new["machines"] = dict(sorted(new["machines"].items()))
    models = new.setdefault("models", {})
    for name, info in _models(results, speed).items():
        models.setdefault(name, info)
    new["models"] = dict(sorted(models.items()))
    owners = new.setdefault("owners", {})
    for kind, names in _owners(results, speed).items():
        merged = {**names, **owners.get(kind, {})}
        owners[kind] = dict(sorted(merged.items()))
    outputs = new.setdefault("outputs", {})
    for name, out in results.outputs.items():
        if name in {e.metric for e in speed} and name not in outputs:
            outputs[name] = out.as_dict()
    new["outputs"] = dict(sorted(outputs.items()))
    return new, machine, replaced


def write_baseline(baseline: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(baseline, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _upgrade(doc: dict) -> dict:
    """A format-1 baseline as format 2: its speed rows in a section of an unknown machine, which
    ``compare`` never judges (format 1 recorded no machine)."""
    doc = dict(doc)
    outputs = doc.get("outputs") or {}
    speed = [e for e in doc["entries"] if e.get("kind") == SPEED
             or (e.get("metric") in outputs and is_speed(Output.from_dict(outputs[e["metric"]])))]
    doc["entries"] = [e for e in doc["entries"] if e not in speed]
    doc["machines"] = {UNKNOWN_MACHINE: {
        "description": f"unknown machine (a {doc['format']} baseline records none)", "fingerprint": {},
        "calibration": None, "created": doc.get("created"), "source": doc.get("source"),
        "seeds": doc.get("seeds", []), "entries": speed}} if speed else {}
    doc["format"] = BASELINE_FORMAT
    return doc


def read_baseline(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"no baseline at {path}; make one with `python -m harness baseline save RESULTS --to {path}`")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") not in (BASELINE_FORMAT, *OLD_FORMATS):
        raise UserError(f"{path} is not a harness baseline (format {BASELINE_FORMAT!r} expected)")
    baseline_schema.check(doc, path)
    for key in ("profile", "entries", "datasets"):
        if key not in doc:
            raise UserError(f"baseline {path} has no {key!r}")
    if doc["format"] in OLD_FORMATS:
        doc = _upgrade(doc)
    if not isinstance(doc.get("machines", {}), dict):
        raise UserError(f"baseline {path}: 'machines' must map machine ids to speed sections")
    return doc


def baseline_source(path, outputs: Optional[Mapping] = None) -> tuple:
    """(baseline document, the results set it was made from or None): a baseline file as it is, or a
    results directory summarised into a baseline on the spot (:func:`make_baseline`), whose per-example
    values a comparison can pair with."""
    from harness.comparison import load_results

    path = Path(path)
    if path.is_dir():
        results = load_results(path, outputs)
        return make_baseline(results), results
    return read_baseline(path), None


def _entries(doc: dict, rows: list) -> list:
    return [Entry(model=e["model"], dataset=e["dataset"], id=e["id"], metric=e.get("metric", e["id"]),
                  family=doc.get("models", {}).get(e["model"], {}).get("family", ""), unit=e.get("unit", ""),
                  estimator=e.get("estimator", ""), higher_is_better=e["higher_is_better"], mean=float(e["mean"]),
                  stderr=e.get("stderr"), n_seeds=int(e.get("n_seeds", 1)), seeds=list(e.get("seeds", [])),
                  protocol=e.get("protocol"))
            for e in rows]


def baseline_outputs(doc: dict, known: Mapping) -> dict:
    """Measurement name -> :class:`~harness.contracts.Output` as the baseline declares it; a declaration
    saved before outputs declared role and scaling takes them from ``known`` (the results')."""
    return {name: Output.from_dict(d, known.get(name)) for name, d in (doc.get("outputs") or {}).items()}


def baseline_entries(doc: dict) -> list:
    """The quality entries of a baseline."""
    return _entries(doc, doc["entries"])


def section_entries(doc: dict, machine: str) -> list:
    """The speed entries of one machine's section."""
    return _entries(doc, doc.get("machines", {}).get(machine, {}).get("entries", []))
