"""`harness cluster slurm ... -- run ARGS`: the sbatch script that starts a Ray cluster on a Slurm
allocation's nodes and runs ``harness run ARGS`` on it (see harness/cluster/ and docs/cluster.md).

The script is written to ``--output`` or printed. The run's arguments are checked here, before the job
waits in a queue: they must parse as `run`'s, without ``--executor`` or ``--ray-address``, which the
script sets to the cluster it starts.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from harness.contracts import UserError

NAME = "cluster"
HELP = "write a batch script that runs the harness on a cluster it starts (`cluster slurm`: a Slurm allocation)"

# The launcher's options as (flag, attribute), in the order the script's header repeats them.
OPTIONS = (("--nodes", "nodes"), ("--cpus-per-node", "cpus_per_node"), ("--gpus-per-node", "gpus_per_node"),
           ("--partition", "partition"), ("--time", "time"), ("--account", "account"), ("--job-name", "job_name"),
           ("--port", "port"), ("--port-range", "port_range"), ("--dashboard-port", "dashboard_port"),
           ("--start-timeout", "start_timeout"), ("--python", "python"))


def configure(parser) -> None:
    kinds = parser.add_subparsers(dest="scheduler", metavar="SCHEDULER", required=True)
    slurm = kinds.add_parser(
        "slurm", help="an sbatch script: Ray on the allocation's nodes, the run on the first",
        description="Write an sbatch script that starts a Ray head on the first node of the allocation and a "
                    "Ray worker on each other node (Ray's recipe for Slurm), waits until they have joined, runs "
                    "`python -m harness run ARGS --executor ray --ray-address HEAD:PORT` on the first node from "
                    "this directory with this Python, and stops Ray when the run ends. Submit it with "
                    "`sbatch FILE`. Example: cluster slurm --nodes 4 --cpus-per-node 16 --gpus-per-node 4 "
                    "--time 24:00:00 --output full.sbatch -- run --all --profile full --device cuda "
                    "--out /shared/reports/full")
    alloc = slurm.add_argument_group("the allocation (#SBATCH lines)")
    alloc.add_argument("--nodes", type=int, required=True, metavar="N", help="nodes; the first runs the Ray head")
    alloc.add_argument("--cpus-per-node", type=int, required=True, metavar="C",
                       help="CPUs on each node (--cpus-per-task; Ray's --num-cpus)")
    alloc.add_argument("--gpus-per-node", type=int, default=0, metavar="G",
                       help="GPUs on each node (--gpus-per-node; Ray's --num-gpus; default 0)")
    alloc.add_argument("--gres", action="store_true",
                       help="ask for the GPUs as --gres=gpu:G (for a Slurm without --gpus-per-node)")
    alloc.add_argument("--partition", metavar="P", help="the partition (queue) to run in")
    alloc.add_argument("--time", metavar="HH:MM:SS", help="the job's time limit (also D-HH:MM:SS or minutes)")
    alloc.add_argument("--account", metavar="A", help="the account to charge")
    alloc.add_argument("--job-name", default="harness", metavar="NAME", help="the job's name (default harness)")
    alloc.add_argument("--sbatch-option", action="append", default=[], metavar="OPTION", dest="sbatch_options",
                       help="one more #SBATCH line, repeatable, written with = (--sbatch-option=--mem=64G)")
    ray = slurm.add_argument_group("Ray's ports (for a shared cluster or a firewall)")
    ray.add_argument("--port", type=int, default=6379, metavar="P",
                     help="the head's port, where the workers and the run connect (default 6379)")
    ray.add_argument("--port-range", metavar="LOW-HIGH",
                     help="every other port Ray opens on a node comes from this range: its services (node and "
                          "object manager, agents, metrics, client server) take the first 7, its workers the rest "
                          "(at least 2 a CPU + 2); default: Ray's own choice")
    ray.add_argument("--dashboard-port", type=int, metavar="P",
                     help="start Ray's dashboard on the head on this port (default: no dashboard)")
    ray.add_argument("--start-timeout", type=int, default=300, metavar="SECONDS",
                     help="how long the nodes may take to start and join before the script gives up or runs on "
                          "those that joined (default 300)")
    slurm.add_argument("--python", default=sys.executable, metavar="PATH",
                       help="the Python that runs Ray and the harness on the nodes (default: this one, "
                            f"{sys.executable})")
    slurm.add_argument("--output", type=Path, metavar="FILE.sbatch", help="write the script here (default: print it)")
    slurm.add_argument("run_args", nargs="*", metavar="-- run ARGS",
                       help="the run, after --: `run` and its arguments, without --executor and --ray-address")


def launcher_command(args) -> str:
    """The command line that writes this script again (for its header)."""
    words = ["python", "-m", "harness", "cluster", "slurm"]
    for flag, attribute in OPTIONS:
        value = getattr(args, attribute)
        if value is not None:
            words += [flag, str(value)]
    words += ["--gres"] if args.gres else []
    words += [f"--sbatch-option={option}" for option in args.sbatch_options]
    return shlex.join([*words, "--", *args.run_args])


def check_run_parses(run_args: list) -> None:
    """`run`'s own parser on the arguments: a mistake ends here (exit 2, with run's usage), not in the queue."""
    from harness.cli import build_parser

    parser, _ = build_parser()
    parser.parse_args(run_args)


def execute(args, host) -> int:
    from harness.cluster import SlurmJob, parse_port_range, sbatch_script

    job = SlurmJob(nodes=args.nodes, cpus_per_node=args.cpus_per_node, gpus_per_node=args.gpus_per_node,
                   run_args=tuple(args.run_args), python=args.python, workdir=os.getcwd(),
                   partition=args.partition, time=args.time, account=args.account, job_name=args.job_name,
                   port=args.port, dashboard_port=args.dashboard_port, gres=args.gres,
                   port_range=parse_port_range(args.port_range) if args.port_range is not None else None,
                   start_timeout=args.start_timeout, sbatch_options=tuple(args.sbatch_options),
                   launcher=launcher_command(args))
    check_run_parses(list(job.run_args))
    if args.output is not None and not args.output.parent.is_dir():
        raise UserError(f"--output {args.output}: there is no directory {args.output.parent}")
    script = sbatch_script(job)
    if args.output is None:
        sys.stdout.write(script)
        return 0
    args.output.write_text(script)
    args.output.chmod(0o755)
    gpus = f" and {job.gpus_per_node} GPUs" if job.gpus_per_node else ""
    print(f"wrote {args.output}: {job.nodes} node(s) of {job.cpus_per_node} CPUs{gpus}, Ray's head on port "
          f"{job.port}; submit it with `sbatch {shlex.quote(str(args.output))}`")
    return 0
