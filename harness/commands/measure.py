"""What `evaluate` and `evaluate-samples` share: the options of where and how jobs run, running planned
jobs through the runner (one run per profile), and writing and printing the results as `run` does."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.commands import skips, trackers
from harness.commands.output import add_format_option, byte_size, emit
from harness.contracts import UserError


def add_options(parser, out_default: str) -> None:
    parser.add_argument("--metric", nargs="+", metavar="NAME",
                        help="only these metrics, by metric name or by the name of a measurement it emits "
                             "(default: every compatible one)")
    parser.add_argument("--out", type=Path, help=f"output directory (default reports/{out_default}-<timestamp>)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where to run (default cpu)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    parser.add_argument("--job-timeout", type=float, default=None, metavar="SECONDS",
                        help="per-job time limit (default: the profile's)")
    trackers.add_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    """Run ``jobs`` into ``out`` (a Runner per profile, all logging to ``tracking``); (store, merged summary).
    Exits 2 (UserError) when no job can run."""
    from harness.commands.run import progress_factory, resolve_device
    from harness.data import resolve_data_root
    from harness.profiles import get_profile
    from harness.runner import Runner

    if all(job.skip_reason is not None for job in jobs):
        lines = ["nothing to measure:"] + [f"  {m} on {d}: {why}" for m, d, _, why in skips.pairs(jobs)]
        raise UserError("\n".join(lines))
    profiles = {}
    for job in jobs:
        profiles.setdefault(job.profile, []).append(job)
    runners = [(Runner(host, get_profile(name), out, seeds=sorted({j.seed for j in group}),
                       device=resolve_device(args.device), data_root=resolve_data_root(args.data_root),
                       metrics=args.metric or None, job_timeout=args.job_timeout,
                       progress=progress_factory(args.no_progress or args.format == "json"),
                       save_artifacts=save_artifacts, tracking=tracking), group)
               for name, group in sorted(profiles.items())]
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    store = None
    for runner, group in runners:
        if store is not None:
            store.close()
        store, part = runner.run(group)
        for key, value in part.items():
            summary[key] = summary.get(key, 0) + value if isinstance(value, int) else value
    return store, summary


def report(store, summary: dict, out: Path, jobs: list, meta: dict, args, saving, source=None, tracking=None) -> int:
    """Write results and reports, print the compact tables (or JSON); the exit code (1 if anything failed).
    ``saving``: whether models were saved (None: there are no models to save, say nothing about them).
    ``source``: where the report loads datasets from (a run passes its already loaded ones). ``tracking``:
    the command's trackers, which log the written files and close their runs here. `run`, `evaluate` and
    `evaluate-samples` all end here."""
    from harness.report import write_reports
    from harness.report.terminal import terminal_summary
    from harness.store import RESULT_COLUMNS

    df = store.results()
    outputs = store.outputs()
    paths = write_reports(df, out, meta={**meta, "run": summary["run_id"]}, outputs=outputs, runs=store.runs(),
                          source=source)
    store.close()
    failed = summary["failed"] > 0 or (df["status"] == "failed").any()
    if tracking is not None:
        tracking.run_finished({**paths, "config": out / "config.toml"}, summary, "failed" if failed else "finished")
        summary = {**summary, "tracking": tracking.report()} if tracking.report() else summary
    if args.format == "json":
        emit({"summary": summary, "files": {k: str(v) for k, v in paths.items()},
              "results": df.reindex(columns=RESULT_COLUMNS).astype(object).where(df.notna(), None)
              .to_dict(orient="records")}, "json")
        return 1 if failed else 0
    print(terminal_summary(df, outputs, paths["html"]))
    reused = f", {summary['reused']} reused" if summary.get("reused") else ""
    print(f"{summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped{reused}; results in "
          f"{paths['csv']}, tables in {paths['markdown']}")
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
