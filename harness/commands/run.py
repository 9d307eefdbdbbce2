"""`harness run`: train and measure models on datasets, stream results into DIR, write reports."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.commands.output import add_format_option, emit
from harness.contracts import UserError
from harness.data import resolve_data_root
from harness.profiles import PROFILES, get_profile

NAME = "run"
HELP = "train every selected model on its datasets and measure it"


def configure(parser) -> None:
    sel = parser.add_argument_group("selection")
    sel.add_argument("--all", action="store_true", help="every installed model on the datasets it declares as "
                                                          "defaults for the profile (--dataset overrides them)")
    sel.add_argument("--model", nargs="+", metavar="M", help="models to run")
    sel.add_argument("--dataset", nargs="+", metavar="D", help="datasets to run on (default: each model's own)")
    sel.add_argument("--metric", nargs="+", metavar="NAME", help="only these metrics (default: every compatible one)")
    parser.add_argument("--profile", default="quick", choices=list(PROFILES),
                        help="budget: smoke (CI, seconds a job), quick (default, laptop CPU), full (GPU)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1 for every job (default 1)")
    parser.add_argument("--seed-offset", type=int, default=0, metavar="S", help="first seed (default 0)")
    parser.add_argument("--out", type=Path, help="output directory (default reports/run-<timestamp>)")
    parser.add_argument("--resume", action="store_true", help="skip jobs already finished in --out")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where to run (default cpu)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N jobs at once in a local process pool (default 1: in this process)")
    parser.add_argument("--job-timeout", type=float, default=None, metavar="SECONDS",
                        help="per-job time limit (default: the profile's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_format_option(parser)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return name


def progress_factory(disabled: bool):
    from tqdm.auto import tqdm

    def make(total, desc, leave=True):
        return tqdm(total=total, desc=desc, leave=leave, file=sys.stderr, dynamic_ncols=True,
                    disable=True if disabled else None)

    return make


def execute(args, host) -> int:
    from harness.report import comparison_tables, write_reports
    from harness.executors import get_executor
    from harness.runner import Runner

    if not args.all and not args.model:
        raise UserError("say what to run: --all, or --model M [M ...] (see `python -m harness list models`)")
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    profile = get_profile(args.profile)
    out = args.out or Path("reports") / time.strftime("run-%Y%m%d-%H%M%S")
    if args.metric:
        for name in args.metric:
            host.metric(name)
    runner = Runner(host, profile, out, seeds=range(args.seed_offset, args.seed_offset + args.seeds),
                    device=resolve_device(args.device), data_root=resolve_data_root(args.data_root), resume=args.resume,
                    metrics=args.metric, job_timeout=args.job_timeout,
                    progress=progress_factory(args.no_progress or args.format == "json"),
                    executor=get_executor(args.jobs))
    jobs = runner.plan(args.model, args.dataset, args.all)
    if not jobs:
        raise UserError("nothing to run: the selection names no model")
    store, summary = runner.run(jobs)
    df = store.results()
    meta = {"profile": profile.name, "seeds": f"{args.seed_offset}..{args.seed_offset + args.seeds - 1}",
            "device": str(runner.device), "run": summary["run_id"]}
    paths = write_reports(df, out, meta=meta)
    store.close()
    failed = summary["failed"] > 0 or (df["status"] == "failed").any()
    if args.format == "json":
        emit({"summary": summary, "files": {k: str(v) for k, v in paths.items()},
              "results": df.reindex(columns=list(df.columns[:14])).astype(object).where(df.notna(), None)
              .to_dict(orient="records")}, "json")
    else:
        for dataset, table in comparison_tables(df, "quality").items():
            print(f"## {dataset}\n\n{table.to_markdown()}\n")
        print(f"(speed figures are in {paths['markdown']})\n")
        print(f"{summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} skipped, "
              f"{summary['reused']} reused; results in {paths['csv']}, report in {paths['markdown']}")
        if failed:
            bad = df[df["status"] == "failed"][["model", "dataset", "seed", "metric", "reason"]].drop_duplicates()
            print("\nfailed:\n" + bad.fillna("").to_markdown(index=False), file=sys.stderr)
    return 1 if failed else 0
