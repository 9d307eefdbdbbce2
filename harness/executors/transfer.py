"""Files for the run directory from workers that do not share it with the coordinator.

A job writes its files (its artifact folder under ``DIR/artifacts/``, see :mod:`harness.artifacts`) into
the run directory at the coordinator's absolute path. With a shared filesystem that *is* the run
directory and nothing travels. Without one, the worker's copy is a local directory of that node: after
the job the worker collects what it wrote into the attempt's ``files`` (path relative to the run
directory -> bytes), removes its local copy, and the coordinator writes the files into the run
directory before it stores the job's result.

The two cases are told apart with a token: the coordinator writes a fresh random token into
``DIR/.harness-run-token``; a worker that reads the same token there shares the directory.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import Optional

from harness.artifacts import ARTIFACTS_DIR, folder_name

TOKEN_FILE = ".harness-run-token"


def mark(run_dir: Path) -> str:
    """Write a fresh token into the run directory (coordinator) and return it."""
    token = secrets.token_hex(16)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TOKEN_FILE).write_text(token)
    return token


def shares(run_dir: Path, token: str) -> bool:
    """Whether this process sees the coordinator's run directory (worker)."""
    try:
        return (run_dir / TOKEN_FILE).read_text() == token
    except OSError:
        return False


def job_dirs(job) -> list:
    """The directories, relative to the run directory, ``job`` writes into."""
    return [f"{ARTIFACTS_DIR}/{folder_name(job.model, job.dataset, job.seed, job.key)}"]


def collect(run_dir: Path, relative_dirs: list) -> dict:
    """Every file under these directories of a local (unshared) run directory, as
    {relative path: bytes}; the local copies are removed."""
    files = {}
    for rel in relative_dirs:
        root = run_dir / rel
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            files[path.relative_to(run_dir).as_posix()] = path.read_bytes()
        shutil.rmtree(root, ignore_errors=True)
    return files


def deliver(run_dir: Path, files: dict) -> None:
    """Write collected files into the run directory (coordinator). A path that would land outside
    it is refused."""
    base = run_dir.resolve()
    for rel, data in files.items():
        target = _inside(base, rel)
        if target is None:
            raise ValueError(f"refusing to write {rel!r} outside the run directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)


def _inside(base: Path, rel: str) -> Optional[Path]:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        return None
    target = (base / pure).resolve()
    return target if target.is_relative_to(base) else None
