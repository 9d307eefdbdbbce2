"""`harness run`: train and measure models on datasets, stream results into DIR, write reports.

The selection comes from the flags, from ``--config FILE.toml`` (flags win), or both; hyperparameters
from each model's declaration, the file's ``[set]`` and ``[hparams]`` tables and ``--set``. Every run
writes what it resolved to ``DIR/config.toml``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.cli_support import adapted, measure, skips, trackers
from harness.cli_support.output import add_format_option
from harness.contracts import UserError
from harness.data import resolve_data_root
from harness.profiles import PROFILES, get_profile

NAME = "run"
HELP = "train every selected model on its datasets and measure it"
DEFAULT_PROFILE = "quick"


def configure(parser) -> None:
    sel = parser.add_argument_group("selection")
    sel.add_argument("--all", action="store_true", default=None,
                     help="every installed model on the datasets it declares as defaults for the profile "
                          "(--dataset overrides them)")
    sel.add_argument("--model", nargs="+", action="extend", metavar="M",
                     help="models to run (repeatable): registered names, or objects of your own code as "
                          "py:PACKAGE.MODULE:FACTORY (docs/evaluating.md)")
    sel.add_argument("--dataset", nargs="+", metavar="D", help="datasets to run on (default: each model's own)")
    sel.add_argument("--metric", nargs="+", metavar="NAME",
                     help="only these metrics, by metric name or by the name of a measurement it emits "
                          "(default: every compatible one)")
    sel.add_argument("--config", type=Path, metavar="FILE.toml",
                     help="selection and overrides from a TOML file (e.g. an earlier run's config.toml); "
                          "flags given here win over it")
    sel.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE", dest="sets",
                     help="override a hyperparameter (repeatable); FAMILY.KEY=VALUE sets it for every model of "
                          "the family that has it; VALUE is a TOML scalar or array (3, 1e-3, true, \"conv\", "
                          "[64, 64]); `list models --format json` shows every model's hyperparameters")
    adapted.add_model_options(parser, NAME)
    parser.add_argument("--profile", default=None, choices=list(PROFILES),
                        help="budget: smoke (CI, seconds a job), quick (default, laptop CPU), full (GPU)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="seeds 0..N-1 for every (model, dataset) (default: the profile's, 1 for smoke and 3 for "
                             "quick and full)")
    parser.add_argument("--seed-offset", type=int, default=0, metavar="S", help="first seed (default 0)")
    parser.add_argument("--out", type=Path, help="output directory (default reports/run-<timestamp>)")
    parser.add_argument("--resume", action="store_true",
                        help="skip jobs already finished in --out; a job still to do whose model an earlier job of "
                             "--out saved (e.g. with another --metric selection) restores it instead of training")
    parser.add_argument("--overwrite", action="store_true",
                        help="--out holds earlier results: delete them (store, results, reports, saved models) and "
                             "start afresh; without it (or --resume) a non-empty --out is refused")
    parser.add_argument("--no-artifacts", action="store_true",
                        help="do not save the fitted models under DIR/artifacts (they are what `harness evaluate` "
                             "re-measures and --resume reuses)")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"],
                        help="where to run (default auto: cuda when a CUDA device is available, else cpu)")
    measure.add_speed_option(parser)
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    parser.add_argument("--job-timeout", type=float, default=None, metavar="SECONDS",
                        help="per-job time limit (default: the profile's)")
    measure.add_executor_options(parser)
    trackers.add_options(parser)
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


def settings(args):
    """(RunConfig as given, the effective selection dict, overrides): the file's, with the flags on top."""
    from harness.config import RunConfig, read_config
    from harness.hparams import parse_set

    config = read_config(args.config) if args.config else RunConfig()
    run = dict(config.run)
    if args.model:
        run["models"], run["all"] = list(args.model), False
    if args.all:
        run["all"] = True
        if not args.model:
            run.pop("models", None)
    for flag, key in ((args.dataset, "datasets"), (args.metric, "metrics"), (args.profile, "profile"),
                      (args.device, "device"), (args.job_timeout, "job_timeout")):
        if flag is not None:
            run[key] = list(flag) if isinstance(flag, list) else flag
    if args.speed_per_seed:
        run["speed_per_seed"] = True
    if args.seeds is not None:
        run["seeds"] = list(range(args.seed_offset, args.seed_offset + args.seeds))
    elif args.seed_offset:
        count = run.get("seeds", get_profile(run.get("profile", DEFAULT_PROFILE)).seeds)
        run["seeds"] = [s + args.seed_offset for s in (count if isinstance(count, list) else range(count))]
    overrides = list(config.overrides) + [parse_set(text) for text in args.sets]
    return config, run, overrides


def execute(args, host) -> int:
    from harness.config import RunConfig, seeds_from, write_config
    from harness.report.data import DatasetSource
    from harness.runner import Runner
    from harness.storage.claim import claim_output

    config, run, overrides = settings(args)
    if not run.get("all") and not run.get("models"):
        raise UserError("say what to run: --all, --model M [M ...] or --config FILE.toml "
                        "(see `python -m harness list models`)")
    own = adapted.prepare_run(host, run, args)  # py: references become registered models
    profile = get_profile(run.get("profile", DEFAULT_PROFILE))
    seeds = seeds_from(run.get("seeds", profile.seeds))
    if not seeds:
        raise UserError("--seeds must be at least 1")
    out = args.out or Path("reports") / time.strftime("run-%Y%m%d-%H%M%S")
    for name in run.get("metrics") or []:
        host.metric(name)
    tracked = trackers.settings(args, config.tracking)
    tracking = trackers.open_tracking(host, tracked, NAME)
    executor = measure.executor_from(args, host, out)
    runner = Runner(host, profile, out, seeds=seeds, device=resolve_device(run.get("device", "auto")),
                    data_root=resolve_data_root(args.data_root), resume=args.resume,
                    metrics=run.get("metrics") or None, job_timeout=run.get("job_timeout"),
                    progress=progress_factory(args.no_progress or args.format == "json"),
                    executor=executor, overrides=overrides, save_artifacts=not args.no_artifacts,
                    tracking=tracking, speed_per_seed=bool(run.get("speed_per_seed")))
    jobs = adapted.plan_run(own, runner, run)  # runner.plan, with the py: models' plan-time checks
    if not jobs:
        raise UserError("nothing to run: the selection names no model")
    explicit = bool(run.get("models")) and bool(run.get("datasets")) and not run.get("all")
    if explicit and all(job.skip_reason is not None for job in jobs):
        raise UserError(skips.explain(host, jobs))
    meta = {"profile": profile.name, "seeds": ", ".join(map(str, seeds)), "device": str(runner.device)}
    measure.announce(runner, jobs, args.format == "json")
    # The executor joins or starts a Ray cluster now: a bad address exits 2 before anything is written. The
    # claim locks --out (one writer at a time) and refuses earlier results without --resume or --overwrite.
    with executor, claim_output(out, args.resume, args.overwrite):
        out.mkdir(parents=True, exist_ok=True)
        resolved: dict = {}
        for job in jobs:
            if job.dataset != "-":
                resolved.setdefault(job.model, {})[job.dataset] = job.hparams
        written = RunConfig({**run, "profile": profile.name, "seeds": seeds},
                            [o for o in overrides if o.dataset is None], tracked.as_config())
        write_config(out / "config.toml", written, resolved,
                     header="Written by `python -m harness run`: this run's resolved configuration.\n"
                            f"`python -m harness run --config {out / 'config.toml'} --out DIR` runs the same jobs.")
        try:
            store, summary = runner.run(jobs)
        except KeyboardInterrupt:
            executor.close()  # cancel what is still running before the tables are written
            return interrupted(host, out, jobs, meta, executor.resume_flags(), tracking)
    source = DatasetSource(host, runner.data_root, cache=runner.job_runner.datasets)
    return measure.report(host, store, summary, out, jobs, meta, args, saving=not args.no_artifacts, source=source,
                          tracking=tracking)


def interrupted(host, out: Path, jobs: list, meta: dict, executor_flags: list = (), tracking=None) -> int:
    """Ctrl-C: write the report formats of the jobs that finished, say how to resume, exit 130."""
    from harness.report import SummarisedRun
    from harness.report.formats import write_every_run
    from harness.store import Store

    store = Store(out)
    try:
        df = store.results()
        done = int(df.loc[df["key"].isin({job.key for job in jobs}), "key"].nunique())
        run = SummarisedRun(df, out, store.outputs(), store.runs(), meta=meta)
    finally:
        store.close()
    paths = write_every_run(run, host.registry.report_formats, out)
    if tracking is not None:
        tracking.run_finished({**paths, "config": out / "config.toml"}, {}, "interrupted")
    where = " and ".join(str(paths[name]) for name in ("csv", "markdown") if name in paths)
    print(f"\ninterrupted: {done} of {len(jobs)} jobs finished and are kept"
          + (f"; their results are in {where}" if where else "")
          + f".\nResume with:\n  python -m harness run --config {out / 'config.toml'} "
          f"--out {out} --resume{''.join(' ' + flag for flag in executor_flags)}", file=sys.stderr)
    return 130
