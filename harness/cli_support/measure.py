"""What `run`, `evaluate` and `evaluate-samples` share: the options of where and how jobs run (the
executor among those registered, and the options it accepts), running planned jobs through the runner
(one run per profile), and writing and printing the results: every report format declared to be
written by every run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.cli_support import skips, trackers
from harness.cli_support.output import add_format_option, byte_size, emit
from harness.contracts import UserError
from harness.jobs import JobStatus


def add_executor_options(parser) -> None:
    """--executor NAME and the options an executor may accept (harness.executors.OPTIONS)."""
    where = parser.add_argument_group("where jobs run (docs/cluster.md)")
    where.add_argument("--executor", default=None, metavar="NAME",
                       help="process: isolated worker processes on this machine, one per usable core (default, "
                            "or $HARNESS_EXECUTOR); local: one job after another in this process (for debugging); "
                            "ray: a Ray task per job on a local or existing Ray cluster (pip install "
                            "'harness[ray]'); or an executor a plugin registers (`python -m harness list "
                            "executors`). Under process and ray a job past its time limit is killed with its "
                            "worker and a crash fails only its job")
    where.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="jobs at once: process: N workers (default: the usable cores, from the CPU affinity "
                            "and the cgroup's CPU quota); ray: at most N tasks in flight (default: every job is "
                            "submitted and Ray runs as many as fit)")
    where.add_argument("--retries", type=int, default=0, metavar="N",
                       help="process, ray: run a job whose worker died (a signal, the out-of-memory killer, a lost "
                            "node) up to N more times; a job that raised or timed out is never retried (default 0)")
    where.add_argument("--ray-address", default=None, metavar="ADDRESS",
                       help="ray: join the Ray cluster at ADDRESS (host:port of its head, or auto) instead of "
                            "starting a local one")
    where.add_argument("--cpus-per-job", type=float, default=None, metavar="N",
                       help="ray: CPUs each job asks for (default: the model's declaration, else 1)")
    where.add_argument("--gpus-per-job", type=float, default=None, metavar="X",
                       help="process, ray with --device cuda: GPUs each job asks for, whole or fractional (0.25: "
                            "four jobs share a GPU; default: the model's declaration, else 1: one job at a time has "
                            "the GPU)")
    where.add_argument("--resources", action="append", default=None, metavar="KEY=VALUE",
                       help="ray: pin jobs to a class of nodes (repeatable): KEY=AMOUNT, a number, holds that much "
                            "of the custom resource KEY (ray start --resources '{\"KEY\": N}'); KEY=WORD runs only on "
                            "nodes labelled so (ray start --labels KEY=WORD), e.g. --resources gpu_type=h100")


def add_speed_option(parser) -> None:
    parser.add_argument("--speed-per-seed", action="store_true",
                        help="measure speed (throughput, latency, memory, FLOPs) in every seed's job; by default "
                             "the lowest seed's job of each model and dataset measures it and the others point at it")


def announce(runner, jobs: list, quiet: bool) -> None:
    """One line on stderr before the jobs start: the device, the executor, the jobs to run."""
    if quiet:
        return
    executor = runner.executor
    workers = f", up to {executor.workers} jobs at once" if executor.workers and executor.workers > 1 else ""
    todo = sum(1 for job in jobs if job.skip_reason is None)
    print(f"device {runner.device_description}; executor {executor.name}{workers}; {todo} job(s) to run",
          file=sys.stderr)


def executor_from(args, host, out: Path):
    """The executor the arguments name, built by its registered factory; a UserError (exit 2) for an
    unknown name or an option it does not accept. Not yet entered (see :func:`run_jobs`)."""
    from harness.executors import ExecutorOptions, make_executor
    from harness.executors.resources import parse_resources

    return make_executor(host, ExecutorOptions(args.executor, args.jobs, args.retries, args.ray_address,
                                               args.cpus_per_job, args.gpus_per_job, out,
                                               resources=parse_resources(args.resources)))


def add_options(parser, out_default: str) -> None:
    parser.add_argument("--metric", nargs="+", metavar="NAME",
                        help="only these metrics, by metric name or by the name of a measurement it emits "
                             "(default: every compatible one)")
    parser.add_argument("--out", type=Path, help=f"output directory (default reports/{out_default}-<timestamp>)")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                        help="where to run (default auto: cuda when a CUDA device is available, else cpu)")
    add_speed_option(parser)
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    parser.add_argument("--job-timeout", type=float, default=None, metavar="SECONDS",
                        help="per-job time limit (default: the profile's)")
    trackers.add_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_executor_options(parser)
    add_format_option(parser)


def output_dir(args, default: str, refuse=()) -> Path:
    out = args.out or Path("reports") / time.strftime(f"{default}-%Y%m%d-%H%M%S")
    for other in refuse:
        if other is not None and Path(out).resolve() == Path(other).resolve():
            raise UserError(f"--out must be a new directory, not {other} itself (to add metrics to {other}, use "
                            f"`python -m harness run --config {Path(other) / 'config.toml'} --out {other} --resume "
                            "--metric ...`)")
    return Path(out)


def check_metrics(host, names) -> None:
    for name in names or []:
        host.metric(name)


def run_jobs(host, jobs: list, out: Path, args, save_artifacts: bool = True, tracking=None) -> tuple:
    """Run ``jobs`` into ``out`` (a Runner per profile, all on the executor the arguments name and logging to
    ``tracking``); (store, merged summary). Exits 2 (UserError) when no job can run or the executor options
    do not fit."""
    from harness.commands.run import progress_factory, resolve_device
    from harness.data import resolve_data_root
    from harness.profiles import get_profile
    from harness.runner import Runner
    from harness.speed_sharing import share_speed

    if all(job.skip_reason is not None for job in jobs):
        lines = ["nothing to measure:"] + [f"  {m} on {d}: {why}" for m, d, _, why in skips.pairs(jobs)]
        raise UserError("\n".join(lines))
    executor = executor_from(args, host, out)
    profiles = {}
    for job in jobs:
        profiles.setdefault(job.profile, []).append(job)
    runners = [(Runner(host, get_profile(name), out, seeds=sorted({j.seed for j in group}),
                       device=resolve_device(args.device), data_root=resolve_data_root(args.data_root),
                       metrics=args.metric or None, job_timeout=args.job_timeout,
                       progress=progress_factory(args.no_progress or args.format == "json"),
                       executor=executor, save_artifacts=save_artifacts, tracking=tracking), group)
               for name, group in sorted(profiles.items())]
    if not args.speed_per_seed:
        share_speed(host, jobs)
    announce(runners[0][0], jobs, args.format == "json")
    summary: dict = {}
    store = None
    with executor:  # joins or starts what it runs on now: a bad address exits 2 before anything is written
        out.mkdir(parents=True, exist_ok=True)
        for runner, group in runners:
            if store is not None:
                store.close()
            store, part = runner.run(group)
            for key, value in part.items():
                summary[key] = summary.get(key, 0) + value if isinstance(value, int) else value
    return store, summary


# Which file of the formats every run writes holds what, for the lines that point at them.
POINTERS = {"csv": "results", "markdown": "tables"}
FULL_REPORT = "html"


def pointers(paths: dict, names=("csv", "markdown")) -> str:
    """``results in DIR/results.csv, tables in DIR/report.md``: where to read on, of the files written."""
    return ", ".join(f"{POINTERS[name]} in {paths[name]}" for name in names if name in paths)


def show(run, formats, paths: dict) -> None:
    """Print the stdout formats every run prints (the terminal summary) and where the full report is."""
    from harness.report.formats import printed_every_run

    parts = printed_every_run(run, formats)
    if FULL_REPORT in paths:
        parts.append(f"every metric, samples and charts: {paths[FULL_REPORT]}")
    print("\n".join(part for part in parts if part))


def report(host, store, summary: dict, out: Path, jobs: list, meta: dict, args, saving, source=None,
           tracking=None) -> int:
    """Write every report format declared for every run, print the compact tables (or JSON); the exit
    code (1 if anything failed). ``saving``: whether models were saved (None: there are no models to save,
    say nothing about them). ``source``: where the report loads datasets from (a run passes its already
    loaded ones). ``tracking``: the command's trackers, which log the written files and close their runs
    here. `run`, `evaluate` and `evaluate-samples` all end here."""
    from harness.report import SummarisedRun
    from harness.report.formats import write_every_run

    df = store.results()
    run = SummarisedRun(df, out, store.outputs(), store.runs(), source, meta={**meta, "run": summary["run_id"]})
    store.close()
    formats = host.registry.report_formats
    paths = write_every_run(run, formats, out)
    failed = summary[JobStatus.FAILED] > 0 or (df["status"] == JobStatus.FAILED).any()
    if tracking is not None:
        tracking.run_finished({**paths, "config": out / "config.toml"}, summary,
                              "failed" if failed else "finished")
        summary = {**summary, "tracking": tracking.report()} if tracking.report() else summary
    if args.format == "json":
        emit({"summary": summary, "files": {k: str(v) for k, v in paths.items()},
              "results": run.tidy.astype(object).where(df.notna(), None).to_dict(orient="records")}, "json")
        return 1 if failed else 0
    show(run, formats, paths)
    reused = f", {summary['reused']} reused" if summary.get("reused") else ""
    where = pointers(paths)
    counts = ", ".join(f"{summary[status]} {status}" for status in JobStatus)
    print(f"{counts}{reused}" + (f"; {where}" if where else ""))
    if saving is not None:
        print(artifact_line(summary, out, saving=saving))
    for line in trackers.lines(tracking) if tracking is not None else []:
        print(line)
    lines = skips.terminal_lines(jobs)
    if lines:
        print("\n" + "\n".join(lines))
    if failed:
        print("\n" + "\n".join(failure_lines(df)), file=sys.stderr)
    return 1 if failed else 0


def artifact_line(summary: dict, out: Path, saving: bool = True) -> str:
    """What the run did with models: how many were restored instead of trained, how many saved (and bytes)."""
    from harness.artifacts import artifacts_dir

    parts = []
    if summary.get("loaded"):
        parts.append(f"{summary['loaded']} model(s) restored from saved weights instead of trained")
    if saving:
        parts.append(f"{summary.get('artifacts', 0)} model(s) saved, {byte_size(summary.get('artifact_bytes', 0))}, "
                     f"in {artifacts_dir(out)}")
    else:
        parts.append("models not saved (--no-artifacts)")
    return "; ".join(parts)


def failure_lines(df) -> list:
    """One line per failed job or metric (seeds grouped), like the skipped pairs' lines."""
    from harness.report.summary import failures

    bad = failures(df)
    lines = [f"failed: {len(bad)} job(s) or metric(s) (all in report.html):"]
    for r in bad.itertuples(index=False):
        what = f"{r.model} / {r.dataset}" + (f" {r.metric}" if r.metric else "")
        lines.append(f"  {what} (seed{'s' if ',' in r.seeds else ''} {r.seeds}): {r.reason}")
    return lines
