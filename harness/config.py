"""Run configuration files: ``run --config FILE.toml`` reads one, and every run writes its fully
resolved configuration to ``DIR/config.toml``, which ``run --config DIR/config.toml`` reproduces (the
same job keys).

The file::

    [run]                       # the selection; every key optional
    models = ["gmm", "vae"]     # or: all = true; objects of your own code as "py:MODULE:FACTORY"
    datasets = ["8gaussians"]   # default: each model's own datasets for the profile
    metrics = ["nll"]           # default: every compatible metric
    profile = "quick"
    seeds = 3                   # a count (0..N-1) or a list: [0, 4]; default: the profile's (smoke 1, else 3)
    device = "cpu"              # default "auto": cuda when available
    job_timeout = 600.0
    likelihood = "exact"        # the kind of every py: model's log_prob (run --likelihood)
    speed_per_seed = true       # speed in every seed's job (default: the lowest seed's)

    [set]                       # hyperparameter overrides, as `run --set`
    "gmm.components" = 12       # MODEL.KEY or FAMILY.KEY
    vae.latent = 8              # a dotted key works too

    [hparams.gmm.8gaussians]    # written by `run`: the values each (model, dataset) resolved to;
    components = 12             # read back, they pin those values for that pair

    [tracking]                  # experiment trackers, as --tracker and --tracker-arg (docs/tracking.md)
    trackers = ["mlflow"]
    args = { experiment = "toys" }   # KEY or "TRACKER.KEY" = VALUE

Command-line flags win over the file: a ``--model`` replaces the file's models, a ``--set`` beats the
file's value for the same key. A malformed file, an unknown key or a value of the wrong type exits 2
with a message naming the line or the key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.contracts import UserError
from harness.hparams import Override

RUN_KEYS = {
    "models": list, "all": bool, "datasets": list, "metrics": list, "profile": str, "seeds": (int, list),
    "device": str, "job_timeout": (int, float), "speed_per_seed": bool,
    "likelihood": str,  # the likelihood kind of every py: model's log_prob (--likelihood)
}
CHOICES = {"device": ("cpu", "cuda", "auto")}  # as `run --device` takes
MAX_SEED_COUNT = 100_000


@dataclass
class RunConfig:
    """A run's selection and overrides, from a file (or to be written to one)."""

    run: dict = field(default_factory=dict)
    overrides: list = field(default_factory=list)  # Override, in file order
    tracking: dict = field(default_factory=dict)  # {"trackers": [names], "args": {key: value}}


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def read_config(path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no config file at {path}")
    try:
        doc = _toml().loads(path.read_text())
    except Exception as exc:  # tomllib's message names the line and column
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(doc) - {"run", "set", "hparams", "tracking"}
    if unknown:
        raise UserError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; a config file holds [run], [set], "
                        "[hparams.MODEL.DATASET] and [tracking]")
    for table in ("run", "set", "hparams", "tracking"):
        if not isinstance(doc.get(table, {}), dict):
            raise UserError(f"{path}: {table} must be a table ([{table}] followed by its keys), not "
                            f"{type(doc[table]).__name__} {doc[table]!r}")
    run = doc.get("run", {})
    for key, value in run.items():
        if key not in RUN_KEYS:
            raise UserError(f"{path}: [run] has no key {key!r} (keys: {', '.join(RUN_KEYS)})")
        if not isinstance(value, RUN_KEYS[key]) or (isinstance(value, bool) and key != "all"):
            raise UserError(f"{path}: [run] {key} = {value!r} has the wrong type")
        if isinstance(value, list) and not all(isinstance(v, int if key == "seeds" else str) for v in value):
            raise UserError(f"{path}: [run] {key} must be a list of {'integers' if key == 'seeds' else 'names'}")
        if key in CHOICES and value not in CHOICES[key]:
            raise UserError(f"{path}: [run] {key} = {value!r}: one of {', '.join(map(repr, CHOICES[key]))}")
    overrides = []
    for target, table in doc.get("set", {}).items():
        items = table.items() if isinstance(table, dict) else [(None, table)]
        for key, value in items:
            name = target if key is None else f"{target}.{key}"
            model, dot, hp = name.partition(".")
            if not dot or not hp or isinstance(value, dict):
                raise UserError(f"{path}: [set] {name!r}: expected \"MODEL.KEY\" = VALUE (e.g. \"gmm.components\" = 3)")
            overrides.append(Override(model, hp, value, f"{path} [set] {name}", priority=0))
    for model, per_dataset in doc.get("hparams", {}).items():
        if not isinstance(per_dataset, dict):
            raise UserError(f"{path}: [hparams.{model}] must hold one table per dataset")
        for dataset, values in per_dataset.items():
            if not isinstance(values, dict):
                raise UserError(f"{path}: [hparams.{model}.{dataset}] must be a table of hyperparameters")
            for key, value in values.items():
                overrides.append(Override(model, key, value, f"{path} [hparams.{model}.{dataset}] {key}",
                                          dataset=dataset, priority=0))
    return RunConfig(dict(run), overrides, _tracking(path, doc.get("tracking", {})))


def _tracking(path, table) -> dict:
    """The ``[tracking]`` table: ``trackers`` (names) and ``args`` (KEY or TRACKER.KEY -> value; a nested
    table ``[tracking.args.TRACKER]`` means TRACKER.KEY)."""
    if not isinstance(table, dict) or set(table) - {"trackers", "args"}:
        raise UserError(f"{path}: [tracking] holds trackers = [names] and args = {{ KEY = VALUE }}")
    trackers = table.get("trackers", [])
    if not isinstance(trackers, list) or not all(isinstance(t, str) for t in trackers):
        raise UserError(f"{path}: [tracking] trackers must be a list of tracker names")
    if not isinstance(table.get("args", {}), dict):
        raise UserError(f"{path}: [tracking] args must be a table: args = {{ KEY = VALUE }}")
    args = {}
    for key, value in table.get("args", {}).items():
        for name, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            if isinstance(v, (dict, list)):
                raise UserError(f"{path}: [tracking.args] {key}: a value must be a string or a number")
            args[key if name is None else f"{key}.{name}"] = v if isinstance(v, str) else _value(v)
    return {"trackers": trackers, "args": args} if trackers or args else {}


# ---------------------------------------------------------------------------- writing

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else _string(k)


def _string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(config: RunConfig, resolved: dict, header: str = "") -> str:
    """The TOML text of a run: its selection, the user's overrides and ``resolved`` hyperparameters
    (model -> dataset -> values). None values ("automatic") have no TOML form and are listed in a
    comment; reading the file back leaves them automatic."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()] + ([""] if header else [])
    lines.append("[run]")
    for key, value in config.run.items():
        if value is not None:
            lines.append(f"{_key(key)} = {_value(value)}")
    lines += ["", "[set]"]
    effective: dict = {}  # one line per MODEL.KEY: the override that wins (command line over file)
    for o in sorted((o for o in config.overrides if o.dataset is None), key=lambda o: o.priority):
        effective[f"{o.target}.{o.key}"] = o.value
    lines += [f"{_string(name)} = {_value(value)}" for name, value in effective.items()]
    for model in sorted(resolved):
        for dataset in sorted(resolved[model]):
            values = resolved[model][dataset]
            lines += ["", f"[hparams.{_key(model)}.{_key(dataset)}]"]
            automatic = sorted(k for k, v in values.items() if v is None)
            if automatic:
                lines.append(f"# automatic (None): {', '.join(automatic)}")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in sorted(values.items()) if v is not None]
    if config.tracking.get("trackers"):
        lines += ["", "[tracking]", f"trackers = {_value(list(config.tracking['trackers']))}"]
        args = config.tracking.get("args") or {}
        if args:
            lines += ["", "[tracking.args]"] + [f"{_string(k)} = {_string(str(v))}" for k, v in args.items()]
    return "\n".join(lines) + "\n"


def write_config(path, config: RunConfig, resolved: dict, header: str = "") -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(config, resolved, header))
    tmp.replace(path)
    return path


def seeds_from(value, offset: int = 0) -> Optional[list]:
    """A seeds setting (a count or a list) as a list of seeds."""
    from harness.jobs import check_seeds

    if value is None:
        return None
    if isinstance(value, list):
        return check_seeds(value, "seeds")
    count = int(value)
    if count > MAX_SEED_COUNT:  # a typo, not a plan: each seed is a job per model and dataset
        raise UserError(f"seeds = {count}: at most {MAX_SEED_COUNT} seeds")
    check_seeds([offset, offset + max(count, 1) - 1], "seeds")
    return list(range(offset, offset + count))
