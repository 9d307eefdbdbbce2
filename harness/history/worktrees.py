"""Checking a commit out to run harness there: a throwaway ``git worktree`` in the current Python
environment, with ``PYTHONPATH`` pointing at it.

Plugins are found as at the commit: where the worktree is a Python project (``pyproject.toml`` with a
``[project]`` name), its entry points are written as package metadata into the worktree, which
``PYTHONPATH`` puts ahead of the installed copy, and packages it maps to other folders are linked to
them, so a commit that adds, moves or removes a plugin runs with its own; modules named in
``HARNESS_PLUGINS`` resolve through ``PYTHONPATH`` to the worktree's files. Everything else (torch and
the other dependencies) is the current environment's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from harness.history import git


def as_installed(tree: Path) -> Optional[Path]:
    """Make ``tree`` importable as the commit's package would be installed: package metadata (name,
    version, entry points) from ``tree/pyproject.toml`` as a ``.dist-info`` folder, and a link for each
    package setuptools maps to another folder (``package-dir``); None when the tree is not a Python
    project with a ``[project]`` name."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        doc = tomllib.loads((tree / "pyproject.toml").read_text())
    except (OSError, ValueError):
        return None
    project = doc.get("project") or {}
    mapped = ((doc.get("tool") or {}).get("setuptools") or {}).get("package-dir") or {}
    for package, folder in mapped.items():
        if package and "." not in package and not (tree / package).exists() and (tree / folder).is_dir():
            (tree / package).symlink_to(folder, target_is_directory=True)
    name, version = project.get("name"), project.get("version", "0")
    if not name:
        return None
    folder = tree / f"{re.sub(r'[^A-Za-z0-9.]+', '_', name)}-{version}.dist-info"
    folder.mkdir(exist_ok=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = project.get("entry-points") or {}
    if project.get("scripts"):
        groups = {**groups, "console_scripts": project["scripts"]}
    (folder / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
        for group, entries in groups.items()))
    return folder


@contextmanager
def checkout(repo, sha: str, tree: Path):
    """``tree`` as a worktree of ``repo`` at ``sha``, made importable (:func:`as_installed`) for the block,
    removed afterwards."""
    tree.parent.mkdir(parents=True, exist_ok=True)
    git.add_worktree(repo, tree, sha)
    try:
        as_installed(tree)
        yield tree
    finally:
        git.remove_worktree(repo, tree)


def run_harness(tree: Path, args: list, log: Path, data_root: Path) -> int:
    """``python -m harness ARGS`` in ``tree`` with the current interpreter, ``PYTHONPATH`` starting with
    ``tree`` and ``HARNESS_DATA_ROOT`` set to ``data_root``; its output appended to ``log``; the exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["HARNESS_DATA_ROOT"] = str(Path(data_root).resolve())
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write("$ python -m harness " + " ".join(args) + "\n")
        out.flush()
        return subprocess.run([sys.executable, "-m", "harness", *args], cwd=tree, env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode
