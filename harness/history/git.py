"""What the history asks git: which commit a run was made at, a commit's date and subject, the
first-parent chain between two commits, which files two commits differ in, and throwaway worktrees."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.contracts import UserError


class GitError(UserError):
    """A git command failed, or the place is not inside a git repository."""


def git(repo, *args: str, check: bool = True) -> str:
    """Run ``git -C repo args`` and return its stdout (stripped); :class:`GitError` when it fails."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise GitError("git is not installed (the history reads commits through it)") from None
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)} in {repo} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def toplevel(path) -> Optional[Path]:
    """The root of the git work tree holding ``path`` (its nearest existing folder), or None."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    if path.is_file():
        path = path.parent
    out = git(path, "rev-parse", "--show-toplevel", check=False)
    return Path(out) if out else None


@dataclass(frozen=True)
class Commit:
    sha: str
    date: Optional[str]  # committer date, ISO 8601
    subject: Optional[str]

    @property
    def short(self) -> str:
        return self.sha[:10]


def resolve(repo, name: str) -> Commit:
    """The commit ``name`` (a hash, a prefix, a branch, ``HEAD~3``) names in ``repo``."""
    sha = git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
    if not sha:
        raise GitError(f"{name!r} is not a commit of the repository at {repo}")
    date, _, subject = git(repo, "show", "-s", "--format=%cI%x00%s", sha).partition("\x00")
    return Commit(sha, date or None, subject or None)


def commit_of(places: list, given: Optional[str]) -> Commit:
    """The commit a run was made at: ``given`` (resolved where a repository is at hand, else taken as it
    is), else HEAD of the first of ``places`` that lies inside a git repository."""
    repos = [top for top in (toplevel(p) for p in places) if top is not None]
    if given:
        for repo in repos:
            try:
                return resolve(repo, given)
            except GitError:
                continue
        return Commit(given, None, None)
    if not repos:
        raise UserError("no commit: neither the results directory nor the current directory is inside a git "
                        "repository; say which commit the run was made at with --commit SHA")
    return resolve(repos[0], "HEAD")


def first_parent_chain(repo, good: str, bad: str) -> list:
    """The commits (:class:`Commit`) from just after ``good`` to ``bad`` (included) along ``bad``'s first
    parents, oldest first; :class:`GitError` when ``good`` is not on that chain."""
    lines = git(repo, "log", "--first-parent", "--reverse", "--format=%H%x00%cI%x00%s", f"{good}..{bad}")
    chain = [Commit(*line.split("\x00", 2)) for line in lines.splitlines() if line]
    if not chain:
        raise GitError(f"{bad[:10]} is not a descendant of {good[:10]}: give BAD (the newer commit) first, then GOOD")
    if git(repo, "rev-parse", f"{chain[0].sha}^1", check=False) != good:
        raise GitError(f"{good[:10]} is not on the first-parent history of {bad[:10]} (it came in through a "
                       "merge); name a commit of that history instead, e.g. the merge base")
    return chain


def exists(repo, sha: str, path: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{sha}:{path}"],
                          capture_output=True).returncode == 0


def changed(repo, a: str, b: str, paths: list) -> bool:
    """Whether commits ``a`` and ``b`` differ in any of ``paths`` (a path missing from either counts as a
    change: the layout moved)."""
    if any(not exists(repo, sha, path) for path in paths for sha in (a, b)):
        return True
    return bool(git(repo, "diff", "--name-only", a, b, "--", *paths)) if paths else False


def add_worktree(repo, path: Path, sha: str) -> Path:
    git(repo, "worktree", "add", "--detach", "--force", str(path), sha)
    return path


def remove_worktree(repo, path: Path) -> None:
    git(repo, "worktree", "remove", "--force", str(path), check=False)
