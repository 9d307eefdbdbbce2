"""`python -m tests.crash.run_until ARGS...`: the harness command line, stopped at a chosen moment so a
test can kill it there with SIGKILL.

``HARNESS_TEST_CRASH_AT=PHASE:N`` picks the N-th time this process reaches PHASE; there it writes the
file named by ``HARNESS_TEST_CRASH_MARK`` and sleeps until it is killed. The phases wrap the real code:

- ``fit``: inside a model's fit (its first ``ctx.step`` of the N-th job that fits);
- ``metric``: inside the measuring of the N-th metric;
- ``store``: inside the store's transaction for the N-th job's result, after its rows are written and
  before COMMIT;
- ``artifact``: inside the N-th artifact's writing, after its state file is written into the temporary
  folder and before meta.json and the rename;
- ``report``: inside the writing of the N-th report file, half of it written to the temporary file.

Without ``HARNESS_TEST_CRASH_AT`` it is the plain command line.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import types

COUNTS: dict = {}


def _reached(phase: str) -> None:
    wanted, _, n = os.environ.get("HARNESS_TEST_CRASH_AT", "").partition(":")
    if wanted != phase:
        return
    COUNTS[phase] = COUNTS.get(phase, 0) + 1
    if COUNTS[phase] == int(n):
        with open(os.environ["HARNESS_TEST_CRASH_MARK"], "w") as f:
            f.write(phase)
        while True:
            time.sleep(60)


def install() -> None:
    import harness.report
    import harness.store
    import harness.worker
    from harness import artifacts
    from harness.contracts import FitContext

    step = FitContext.step

    def stepping(self, examples, **scalars):
        if not getattr(self, "_crash_seen", False):
            self._crash_seen = True
            _reached("fit")
        return step(self, examples, **scalars)

    FitContext.step = stepping

    measure = harness.worker.measure

    def measuring(*args, **kwargs):
        _reached("metric")
        return measure(*args, **kwargs)

    harness.worker.measure = measuring

    save_state = artifacts.save_state

    def saving(path, state):
        save_state(path, state)
        _reached("artifact")

    artifacts.save_state = saving

    import harness.report.formats

    atomic_write = harness.report.formats.atomic_write

    def writing(path, text):
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            f.write(text[: len(text) // 2])
        _reached("report")
        atomic_write(path, text)

    # Every report file is written by the formats module's atomic_write, looked up there at call time.
    harness.report.formats.atomic_write = writing
    harness.report.atomic_write = writing

    class Connection(sqlite3.Connection):
        job_rows = False

        def execute(self, sql, *args):
            if sql.startswith("INSERT OR REPLACE INTO jobs"):
                self.job_rows = True
            elif sql == "COMMIT" and self.job_rows:
                self.job_rows = False
                _reached("store")
            return super().execute(sql, *args)

    shim = types.ModuleType("sqlite3")
    shim.__dict__.update(vars(sqlite3))
    shim.connect = lambda *args, **kwargs: sqlite3.connect(*args, factory=Connection, **kwargs)
    harness.store.sqlite3 = shim


if __name__ == "__main__":
    if os.environ.get("HARNESS_TEST_CRASH_AT"):
        install()
    from harness.cli import main

    sys.exit(main(sys.argv[1:]))
