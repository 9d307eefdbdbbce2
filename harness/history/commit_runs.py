"""Measuring one metric of one model at one commit, for bisection: the commit checked out as a
throwaway worktree in the current environment (:mod:`harness.history.worktrees`), and only the jobs of
that model and dataset.

A commit is measured one of two ways:

- **trained**: ``python -m harness run --model M --dataset D --metric NAME`` in the worktree;
- **reused**: when an already measured commit has the same code for the model (:func:`model_paths`: the
  plugin module that registered it, its private sibling modules, and the harness core where it lives in
  the repository), ``python -m harness evaluate`` re-measures that commit's saved models with this
  commit's code instead of training again.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.contracts import UserError
from harness.history import git
from harness.history.git import Commit
from harness.history.worktrees import checkout, run_harness


@dataclass(frozen=True)
class Target:
    """What bisection measures: the metric identity ``metric`` of ``model`` on ``dataset``."""

    metric: str
    model: str
    dataset: str
    profile: str
    seeds: int

    @property
    def metric_name(self) -> str:
        """The name `run --metric` takes: the identity without its sample count and variant."""
        return self.metric.split("[", 1)[0].split("@", 1)[0]


@dataclass
class Measured:
    """One commit's measurement: ``value`` and ``stderr`` (None when it could not be measured, with
    ``reason``), how (``trained``, or ``reused`` with the commit whose saved models it re-measured)."""

    commit: Commit
    how: str
    value: Optional[float] = None
    stderr: Optional[float] = None
    reason: str = ""
    reused_from: Optional[str] = None
    out: Optional[Path] = None


def _module_paths(module: str, repo: Path) -> list:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin:
        return []
    origin = Path(spec.origin).resolve()
    if not origin.is_relative_to(repo):
        return []
    if origin.name == "__init__.py":
        return [origin.parent.relative_to(repo).as_posix()]
    siblings = [p for p in origin.parent.glob("_*.py") if p.name != "__init__.py"]
    return sorted(p.relative_to(repo).as_posix() for p in [origin, *siblings])


def model_paths(host, model: str, repo: Path) -> list:
    """The files of ``repo`` whose change may change how ``model`` trains: the module of the plugin that
    registered it (its package folder when it is a package), the private modules beside it, and the
    harness core when it is part of ``repo``."""
    import harness

    repo = Path(repo).resolve()
    plugin = host.registry.owners.get(("models", model))
    info = host.plugins.get(plugin) if plugin else None
    paths = _module_paths(info.module, repo) if info is not None and info.module else []
    core = Path(harness.__file__).resolve().parent
    if core.is_relative_to(repo):
        paths.append(core.relative_to(repo).as_posix())
    return sorted(set(paths))


class CommitRunner:
    """Measures ``target`` at commits of ``repo``; work goes under ``work`` (runs/, trees/, logs/)."""

    def __init__(self, repo: Path, target: Target, work: Path, data_root: Path, paths: list, reuse: bool = True):
        self.repo, self.target, self.work = Path(repo), target, Path(work)
        self.data_root, self.paths, self.reuse = Path(data_root).resolve(), list(paths), reuse
        self.done: list = []  # Measured with saved models, in the order measured

    def _source_for(self, commit: Commit) -> Optional[Measured]:
        """An earlier measurement whose saved models this commit can re-measure (the model's code is the same)."""
        if not self.reuse:
            return None
        for earlier in self.done:
            if earlier.out is not None and not git.changed(self.repo, earlier.commit.sha, commit.sha, self.paths):
                return earlier
        return None

    def measure(self, commit: Commit, order: list) -> Measured:
        """Measure ``commit``; ``order`` ranks the earlier measurements to reuse from (nearest first)."""
        name = commit.sha[:12]
        tree, out, log = self.work / "trees" / name, self.work / "runs" / name, self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        common = ["--metric", self.target.metric_name, "--out", str(out), "--no-progress"]
        rank = {sha: i for i, sha in enumerate(order)}
        self.done.sort(key=lambda m: rank.get(m.commit.sha, len(rank)))
        with checkout(self.repo, commit.sha, tree):
            source = self._source_for(commit)
            if source is not None:
                code = run_harness(tree, ["evaluate", str(source.out), *common], log, self.data_root)
                measured = self._read(commit, out, code, log, "reused", source.commit.sha)
                if measured.value is not None:
                    return measured
            shutil.rmtree(out, ignore_errors=True)  # what a failed re-measurement left
            t = self.target
            code = run_harness(tree, ["run", "--model", t.model, "--dataset", t.dataset, "--profile", t.profile,
                                        "--seeds", str(t.seeds), *common], log, self.data_root)
            return self._read(commit, out, code, log, "trained", None)

    def _read(self, commit: Commit, out: Path, code: int, log: Path, how: str, source: Optional[str]) -> Measured:
        from harness.history.records import records_from_results

        t = self.target
        measured = Measured(commit, how, reused_from=source)
        try:
            records = records_from_results(out).records
        except UserError as exc:
            measured.reason = f"exit {code}: {_last_line(log) or exc}"
            return measured
        found = [r for r in records if (r.model, r.dataset, r.id) == (t.model, t.dataset, t.metric)]
        if not found:
            measured.reason = f"exit {code}: no {t.metric} of {t.model} on {t.dataset} (see {log})"
            return measured
        measured.value, measured.stderr, measured.out = found[0].mean, found[0].stderr, out
        self.done.append(measured)
        return measured


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
