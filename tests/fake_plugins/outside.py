"""An outside plugin that registers an executor and a report format, the way a third-party package would.

- executor ``outside``: runs each job in this process through the job runner it is handed (as the
  local executor does) and records each job it ran, in :data:`RAN` and in ``DIR/outside-executor.log``
  (one job key a line), so a test in another process can tell who ran the jobs; it accepts ``--jobs``
  (and ignores it: one job at a time).
- report format ``outside``: ``outside.txt``, one line per summarised cell: dataset, model, identity,
  mean and the number of seeds.
"""

from __future__ import annotations

from harness import hookimpl
from harness.executors import ExecutorSpec
from harness.report import ReportFormatSpec

LOG = "outside-executor.log"
RAN: list = []  # keys of the jobs the outside executor ran in this process


class OutsideExecutor:
    name = "outside"
    workers = 1

    def __init__(self, run_dir=None, in_process: bool = True):
        self.run_dir = run_dir
        self.in_process = in_process

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def resume_flags(self) -> list:
        return ["--executor", self.name]

    def results(self, job_runner, jobs):
        for job in jobs:
            result = job_runner.run(job)
            RAN.append(job.key)
            if self.run_dir is not None:
                with open(self.run_dir / LOG, "a", encoding="utf-8") as log:
                    log.write(job.key + "\n")
            yield job, result


def outside_text(run) -> str:
    lines = [f"{r.dataset} {r.model} {r.label} {r.mean!r} seeds={r.seeds}" for r in run.summary.itertuples(index=False)]
    return "\n".join(["outside report of " + run.title, *lines]) + "\n"


@hookimpl
def harness_register_executors(register):
    register(ExecutorSpec("outside", lambda options: OutsideExecutor(options.run_dir),
                          description="in this process, recording every job it runs", accepts=frozenset({"jobs"})))


@hookimpl
def harness_register_report_formats(register):
    register(ReportFormatSpec("outside", outside_text, "outside.txt",
                              description="one line per summarised cell"))
