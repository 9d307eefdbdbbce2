"""The executor contract: what a plugin registers (:class:`ExecutorSpec`), the options the command line
hands every executor (:class:`ExecutorOptions`), and building an executor from them, refusing options
the chosen executor does not accept (:func:`make_executor`).

An executor object (what ``ExecutorSpec.factory`` returns) offers:

- ``name``: the name it was registered under;
- ``results(job_runner, jobs)``: yields ``(job, JobResult)`` as each job ends; every job it is given
  comes back exactly once, and a job that could not run comes back failed with its reason;
- ``in_process``: whether jobs run in the coordinator's own process, one after another (then the
  coordinator is idle between jobs and calibrates the machine there);
- ``workers``: how many jobs run at once on this machine, as the machine fingerprint records it;
- optionally ``watch(callback)``: the executor calls ``callback(jobs)`` with the jobs running at that
  moment, in the order they started, whenever that set changes (the runner's progress line shows them);
- ``resume_flags()``: the command-line flags that select it again (``run --resume`` after Ctrl-C);
- in each JobResult's details, ``machine`` (and ``node``) when the job ran elsewhere than on the
  coordinator's machine (the ray executor's nodes, docs/cluster.md); a job without them ran on the
  coordinator's machine, which the run records;
- the context-manager protocol and ``close()``: entering connects to whatever it runs on (a bad
  address is then a usage error before anything is written); closing ends its workers and cancels what
  is outstanding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from harness.contracts import UserError


@dataclass(frozen=True)
class Option:
    """One option the command line may hand an executor: the ``ExecutorOptions`` field, its flag, what
    accepting it means (for the error that names the executors that do) and its value when not given."""

    name: str
    flag: str
    means: str
    unset: Any = None


OPTIONS = {o.name: o for o in (
    Option("jobs", "--jobs", "run several jobs at once"),
    Option("retries", "--retries", "retry a job whose worker died", unset=0),
    Option("address", "--ray-address", "join a cluster at an address"),
    Option("cpus_per_job", "--cpus-per-job", "give each job a share of CPUs"),
    Option("gpus_per_job", "--gpus-per-job", "give each job a share of GPUs"),
    Option("resources", "--resources", "pin jobs to nodes by custom resources or labels"),
)}


@dataclass
class ExecutorOptions:
    """What the command line says about where jobs run."""

    name: Optional[str] = None  # None: $HARNESS_EXECUTOR, else the executor registered as the default
    jobs: Optional[int] = None  # jobs at once (process: workers; ray: tasks in flight at most)
    retries: int = 0  # more attempts for a job whose worker died
    address: Optional[str] = None  # the cluster to join (ray: host:port of its head, or auto)
    cpus_per_job: Optional[float] = None
    gpus_per_job: Optional[float] = None
    run_dir: Optional[Path] = None  # where results and artifacts land (the coordinator's --out)
    resources: Optional[dict] = None  # --resources: custom resource -> amount, label -> value (executors/resources.py)

    def given(self) -> list:
        """The options set to something other than their unset value, in :data:`OPTIONS` order."""
        return [o for o in OPTIONS.values() if getattr(self, o.name) != o.unset]


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor a plugin registers (``harness_register_executors``).

    ``factory(options: ExecutorOptions)`` returns the executor object (see the module doc); it may raise
    :class:`~harness.contracts.UserError` for values it cannot use. ``accepts``: the names of the
    :data:`OPTIONS` it reads; the command line refuses the others before calling the factory. ``jobs``
    given as 1 always fits: every executor runs at least one job at a time. ``default``: this is the
    executor of a run that names none (neither ``--executor`` nor ``$HARNESS_EXECUTOR``); exactly one
    installed executor declares it (the built-in ``process`` does).
    """

    name: str
    factory: Callable[[ExecutorOptions], Any]
    description: str = ""
    accepts: frozenset = frozenset()
    default: bool = False

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"an executor needs a name, not {self.name!r}")
        if not callable(self.factory):
            raise ValueError(f"executor {self.name!r}: factory must be callable")
        accepts = frozenset(self.accepts)
        unknown = sorted(accepts - set(OPTIONS))
        if unknown:
            raise ValueError(f"executor {self.name!r} accepts unknown options {unknown}; "
                             f"known: {', '.join(OPTIONS)}")
        object.__setattr__(self, "accepts", accepts)


ENVIRONMENT = "HARNESS_EXECUTOR"  # the executor of every run that does not name one


def default_name(executors: Mapping) -> str:
    """The executor a run uses when it names none: ``$HARNESS_EXECUTOR``, else the one registered
    executor that declares itself the default; a UserError when none or several do."""
    chosen = os.environ.get(ENVIRONMENT, "").strip()
    if chosen:
        return chosen
    defaults = sorted(name for name, spec in executors.items() if spec.default)
    if len(defaults) == 1:
        return defaults[0]
    what = f"several installed executors declare themselves the default ({', '.join(defaults)})" if defaults \
        else "no installed executor declares itself the default"
    raise UserError(f"{what}: name one with --executor NAME or ${ENVIRONMENT} "
                    f"(installed: {', '.join(sorted(executors)) or 'none'})")


def make_executor(host, options: ExecutorOptions) -> Any:
    """The executor ``options.name`` names among those the plugins registered with ``host`` (none named:
    :func:`default_name`); a UserError for an unknown name or an option that executor does not accept."""
    if options.name is None:
        options.name = default_name(host.registry.executors)
    spec = host.executor(options.name)
    executors = host.registry.executors
    if options.jobs is not None and options.jobs < 1:
        raise UserError("--jobs must be at least 1")
    if options.retries < 0:
        raise UserError("--retries must be 0 or more")
    refused = [o for o in options.given() if o.name not in spec.accepts
               and not (o.name == "jobs" and options.jobs == 1)]
    if refused:
        raise UserError("; ".join(_refusal(o, spec.name, executors) for o in refused))
    return spec.factory(options)


def _refusal(option: Option, name: str, executors) -> str:
    takers = sorted(n for n, s in executors.items() if option.name in s.accepts)
    where = f"executors that {option.means}: {', '.join(takers)}" if takers else "no installed executor"
    return f"{option.flag} only applies to {where} (not --executor {name})"
