"""What every fuzz test (tests/test_fuzz_*.py) shares: the Hypothesis budget, a sandbox per example,
the command line run in this process, and the property every command must have: it ends with exit
0, 1 or 2 and a message, never a traceback, and writes nothing outside its --out.

The budget: each test names its number of examples for CI; ``HARNESS_FUZZ_SCALE`` multiplies them
(``HARNESS_FUZZ_SCALE=20`` for a long hunt), ``HARNESS_FUZZ_SHRINK=1`` shrinks a failing example. No example database is written (``database=None``);
Hypothesis keeps its caches in ``.hypothesis/`` (ignored by git).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

SCALE = float(os.environ.get("HARNESS_FUZZ_SCALE", "1"))
# No shrinking unless asked (HARNESS_FUZZ_SHRINK=1): an example that runs jobs takes a second, and
# shrinking one can take Hypothesis's five minutes; the failing example is printed as it was drawn.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target] + \
    ([Phase.shrink] if os.environ.get("HARNESS_FUZZ_SHRINK") else [])


def budget(examples: int):
    """Hypothesis settings for a fuzz test of ``examples`` examples (times HARNESS_FUZZ_SCALE)."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True, phases=PHASES)


class Sandbox:
    """A fresh folder per example: ``cwd`` (the command's working directory), ``inputs`` (what the
    example wrote for the command to read) and ``out`` (where the command may write)."""

    def __init__(self, parent: Path):
        self.root = Path(tempfile.mkdtemp(dir=parent))
        self.cwd, self.inputs, self.out = self.root / "cwd", self.root / "inputs", self.root / "out"
        self.cwd.mkdir()
        self.inputs.mkdir()

    def files(self) -> dict:
        """relative path -> (size, modification time) of every file outside ``out``, and of every folder
        (a folder's own times change with its entries, which are listed themselves)."""
        found = {}
        for path in self.root.rglob("*"):
            if path == self.out or self.out in path.parents:
                continue
            stat = path.lstat()
            found[path.relative_to(self.root).as_posix()] = "folder" if path.is_dir() else \
                (stat.st_size, stat.st_mtime_ns)
        return found


def run_command(sandbox: Sandbox, argv, allowed=()) -> tuple:
    """``python -m harness ARGV`` in this process, in ``sandbox.cwd``: (exit code, stdout, stderr), after
    asserting the property (see the module doc). ``allowed``: paths relative to the sandbox the command
    may write besides ``out`` (a dataset's checksum manifest)."""
    from harness.cli import main

    before = sandbox.files()
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(sandbox.cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
    finally:
        os.chdir(here)
    after = sandbox.files()
    written = sorted(p for p in set(after) | set(before) if after.get(p) != before.get(p) and p not in allowed)
    stdout, stderr = out.getvalue(), err.getvalue()
    assert not written, f"wrote outside --out: {written}"
    assert code in (0, 1, 2), (code, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-4000:]
    if code != 0:
        assert stderr.strip() or stdout.strip(), "a failure without a message"
    return code, stdout, stderr
