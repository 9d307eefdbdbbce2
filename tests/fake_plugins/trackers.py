"""Fake trackers for the tracking tests: ``recording`` appends every call (with the process id and what
it was given) to a JSON-lines file; ``broken`` opens its run and then fails every call like a tracker
whose server went away."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness import Tracker, TrackerSpec, hookimpl


class Recording(Tracker):
    def __init__(self, settings):
        self.path = Path(settings["log"])

    def _write(self, event: str, **data) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"event": event, "pid": os.getpid(), **data}, default=str) + "\n")

    def start_run(self, run) -> str:
        self._write("start", run_id=run.run_id, name=run.name, command=run.command, jobs=run.jobs, tags=dict(run.tags))
        return f"file {self.path}"

    def log_job(self, job) -> None:
        self._write("job", record=job.record(), files={k: str(p) for k, p in job.files.items()})

    def finish_run(self, files, summary, status) -> None:
        self._write("finish", files={k: [str(p), Path(p).is_file()] for k, p in files.items()},
                    summary=dict(summary), status=status)


class Broken(Tracker):
    def start_run(self, run) -> str:
        return "nowhere"

    def log_job(self, job) -> None:
        raise ConnectionError(f"tracking server at http://127.0.0.1:9 refused the connection while logging {job.name}")

    def finish_run(self, files, summary, status) -> None:
        raise ConnectionError("tracking server at http://127.0.0.1:9 refused the connection")


def read(path) -> list:
    """The events a ``recording`` tracker wrote (none if it never wrote)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@hookimpl
def harness_register_trackers(register):
    register(TrackerSpec(name="recording", open=Recording, options={"log": "the JSON-lines file to append to"},
                         description="records every call (test fake)"))
    register(TrackerSpec(name="broken", open=lambda settings: Broken(), description="fails every call (test fake)"))
