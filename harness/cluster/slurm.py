"""The sbatch script that runs the harness on a Ray cluster started inside a Slurm allocation.

The script follows Ray's recipe for Slurm: one task a node (``--ntasks-per-node=1``) holding the node's
CPUs (``--cpus-per-task``) and GPUs; the first node's IP address found with ``srun hostname``;
``ray start --head --block`` launched there with ``srun -w HEAD`` in the background, then ``ray start
--address=HEAD:PORT --block`` on each other node; it waits until the nodes have joined and runs
``python -m harness run ARGS --executor ray --ray-address HEAD:PORT`` on the first node. Stopping the
``srun`` steps when the script exits stops Ray on every node. The body is ``slurm_template.sh`` beside
this module; the values of a :class:`SlurmJob` fill its ``@NAME@`` fields, shell-quoted.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from harness.cluster.ports import PortRange, ray_port_options
from harness.contracts import UserError

TEMPLATE = "slurm_template.sh"
SET_BY_LAUNCHER = ("--executor", "--ray-address")  # options of `run` the script gives itself
RAY_CLI = "ray.scripts.scripts"  # the module of Ray's `ray` command, run with the script's interpreter
TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}")  # Slurm's --time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS ...
NAME = re.compile(r"[A-Za-z0-9_.,:+=@%-]+")  # a partition, account or job name: one word, nothing to quote


@dataclass(frozen=True)
class SlurmJob:
    """What the script asks of Slurm and of Ray, and the harness command it runs (``run_args``: ``run ...``)."""

    nodes: int
    cpus_per_node: int
    run_args: tuple
    python: str
    workdir: str
    gpus_per_node: int = 0
    partition: Optional[str] = None
    time: Optional[str] = None
    account: Optional[str] = None
    job_name: str = "harness"
    port: int = 6379
    port_range: Optional[PortRange] = None
    dashboard_port: Optional[int] = None
    gres: bool = False  # ask for GPUs as --gres=gpu:G (Slurm without --gpus-per-node)
    start_timeout: int = 300
    sbatch_options: tuple = ()
    launcher: str = ""  # the command line the script was written from, for its header

    def __post_init__(self):
        if self.nodes < 1:
            raise UserError(f"--nodes {self.nodes}: a cluster needs at least 1 node")
        if self.cpus_per_node < 1:
            raise UserError(f"--cpus-per-node {self.cpus_per_node}: each node needs at least 1 CPU")
        if self.gpus_per_node < 0:
            raise UserError(f"--gpus-per-node {self.gpus_per_node} is negative; give 0 for CPU nodes")
        if self.start_timeout <= 0:
            raise UserError(f"--start-timeout {self.start_timeout}: give the seconds Ray may take to start (> 0)")
        for flag, value in (("--partition", self.partition), ("--account", self.account),
                            ("--job-name", self.job_name)):
            if value is not None and not NAME.fullmatch(value):
                raise UserError(f"{flag} {value!r} is not a Slurm name (letters, digits and _.,:+=@%- only)")
        if self.time is not None and not TIME.fullmatch(self.time):
            raise UserError(f"--time {self.time!r} is not a Slurm time limit (HH:MM:SS, D-HH:MM:SS or minutes)")
        for option in self.sbatch_options:
            if not option.startswith("-") or any(c in option for c in "\r\n"):
                raise UserError(f"--sbatch-option {option!r} is not one sbatch option "
                                "(e.g. --sbatch-option=--mem=64G)")
        check_run_args(self.run_args)
        self.ray_options()  # checks the ports

    def ray_options(self) -> tuple[list, list]:
        """(options of ``ray start`` on the head, options of ``ray start`` on a worker)."""
        head_ports, node_ports = ray_port_options(self.port, self.port_range, self.dashboard_port,
                                                  self.cpus_per_node)
        resources_ = [f"--num-cpus={self.cpus_per_node}", f"--num-gpus={self.gpus_per_node}",
                      "--disable-usage-stats"]
        return resources_ + head_ports + node_ports, resources_ + node_ports

    def sbatch_lines(self) -> list:
        lines = [f"--job-name={self.job_name}", f"--nodes={self.nodes}", "--ntasks-per-node=1",
                 f"--cpus-per-task={self.cpus_per_node}"]
        if self.gpus_per_node:
            lines.append(f"--gres=gpu:{self.gpus_per_node}" if self.gres else f"--gpus-per-node={self.gpus_per_node}")
        for flag, value in (("--partition", self.partition), ("--time", self.time), ("--account", self.account)):
            if value is not None:
                lines.append(f"{flag}={value}")
        return [f"#SBATCH {line}" for line in [*lines, *self.sbatch_options]]


def check_run_args(args) -> None:
    """The arguments after ``--`` must be ``run ...`` without the options the script sets itself."""
    if not args:
        raise UserError("say what to run after --, e.g. `cluster slurm --nodes 2 --cpus-per-node 8 -- "
                        "run --all --profile full --out /shared/reports/full`")
    if args[0] != "run":
        raise UserError(f"the command after -- must be `run ...` (got {args[0]!r}): the script runs "
                        "`python -m harness run ARGS` on the cluster")
    for arg in args[1:]:
        name = arg.split("=", 1)[0]
        # argparse takes any unambiguous prefix of an option (--exec, --ray-a), so prefixes count too.
        for option in SET_BY_LAUNCHER:
            if len(name) > 2 and name.startswith("--") and option.startswith(name):
                raise UserError(f"{arg!r} after --: the script sets {' and '.join(SET_BY_LAUNCHER)} itself "
                                "(the Ray cluster it starts); leave them out")


def _fill(template: str, values: dict) -> str:
    def value(match):
        if match[1] not in values:
            raise KeyError(f"{TEMPLATE} has a field {match[0]} that nothing fills")
        return values[match[1]]

    return re.sub(r"@([A-Z_]+)@", value, template)


def _options(options: list, indent: int) -> str:
    """Options of a command in the script, a few to a continued line."""
    rows = [" ".join(options[i:i + 4]) for i in range(0, len(options), 4)]
    return f" \\\n{' ' * indent}".join(rows)


def sbatch_script(job: SlurmJob) -> str:
    """The batch script for ``job`` (a bash script; ``sbatch`` reads its ``#SBATCH`` lines)."""
    python = shlex.quote(job.python)
    head, worker = job.ray_options()
    launcher = job.launcher.replace("\r", "").replace("\n", "\n#   ")
    values = {
        "SBATCH_LINES": "\n".join(job.sbatch_lines()),
        "LAUNCHER": launcher or "(not recorded)",
        "WORKDIR": shlex.quote(job.workdir),
        "PYTHON": python,
        "RAY": f"{python} -m {RAY_CLI}",
        "PORT": str(job.port),
        "CPUS": str(job.cpus_per_node),
        "START_TIMEOUT": str(job.start_timeout),
        "HEAD_OPTIONS": _options(head, 4),
        "WORKER_OPTIONS": _options(worker, 8),
        "RUN_ARGS": " ".join(shlex.quote(arg) for arg in job.run_args[1:]),
    }
    template = resources.files("harness.cluster").joinpath(TEMPLATE).read_text()
    return _fill(template, values)
