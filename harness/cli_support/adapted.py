"""What `run`, `evaluate` and `evaluate-samples` add for objects of the user's own code (docs/evaluating.md):
the options (``--likelihood``, ``--name``; ``--generator``), turning ``--model py:MODULE:FACTORY`` values into
registered models before planning, the plan-time checks with their notes, and the jobs of
``evaluate --model py:...`` and ``evaluate-samples --generator``. The logic is :mod:`harness.adapters`'."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.contracts import LikelihoodKind, UserError

KINDS = [k.value for k in LikelihoodKind]


def add_model_options(parser, command: str) -> None:
    group = parser.add_argument_group("objects of your own code: --model py:MODULE:FACTORY (docs/evaluating.md)")
    group.add_argument("--likelihood", choices=KINDS, default=None,
                       help="what the log_prob of every py: model gives: exact, bound (a lower bound, e.g. an ELBO) "
                            "or estimate (stochastic); needed where neither the object nor its factory has an "
                            "attribute likelihood (a torch distribution's log_prob is exact)")
    group.add_argument("--name", metavar="LABEL", default=None,
                       help="the name in the tables of the one py: model (default: the factory's name; "
                            "LABEL=py:MODULE:FACTORY names each of several)"
                            + (", and the target of --set LABEL.KEY=VALUE" if command == "run" else ""))


def add_generator_option(parser) -> None:
    parser.add_argument("--generator", metavar="py:MODULE:FUNCTION", default=None,
                        help="instead of PATH: a function of your own code that yields batches of samples (B, *event "
                             "shape), streamed into the metrics without being written to disk; called with the "
                             "dataset's spec if its first parameter has no default; --name defaults to its name")


def _notes(notes: list) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


# ----------------------------------------------------------------------------- run


def prepare_run(host, run: dict, args):
    """Register the py: models among ``run["models"]`` (:class:`harness.adapters.Adapted`), and record
    them in ``run`` as config.toml must: each reference with its label, and ``likelihood``."""
    from harness.adapters import register

    if args.likelihood:
        run["likelihood"] = args.likelihood
    likelihood = run.get("likelihood")
    if likelihood is not None and likelihood not in KINDS:
        raise UserError(f"likelihood = {likelihood!r}: it must be one of {', '.join(KINDS)}")
    adapted = register(host, run.get("models"), likelihood, fitting=True, label=args.name)
    if adapted.plugins:
        run["models"] = adapted.written(run["models"])
    return adapted


def plan_run(adapted, runner, run: dict) -> list:
    """The runner's jobs for the selection, after the plan-time checks of the adapted objects (planned
    again when the checks changed what an adapted model declares)."""
    models, datasets, run_all = adapted.names(run.get("models")), run.get("datasets"), bool(run.get("all"))
    jobs = runner.plan(models, datasets, run_all)
    if adapted.plugins:
        changed, notes = adapted.check(runner.host, jobs, runner.job_runner.datasets)
        if changed:
            jobs = runner.plan(models, datasets, run_all)
        _notes(notes)
    return jobs


# ----------------------------------------------------------------------------- evaluate


def is_reference(text) -> bool:
    from harness.adapters import is_reference as check

    return check(text)


def evaluate(args, host) -> int:
    """``evaluate --model py:MODULE:FACTORY --dataset D``: the object measured as its factory builds it, or
    with ``--checkpoint FILE`` restored from weights (an nn.Module's state_dict, names prefixed object.)."""
    from harness.adapters import register
    from harness.adapters.jobs import as_built_job
    from harness.cli_support import measure, trackers
    from harness.commands.run import resolve_device
    from harness.data import resolve_data_root
    from harness.evaluation import checkpoint_job
    from harness.hparams import parse_set

    if args.directory is not None:
        raise UserError("give either DIR (saved models) or --model py:MODULE:FACTORY --dataset D, not both")
    if args.dataset is None:
        raise UserError(f"evaluating {args.model} needs --dataset D (the dataset to measure it on)")
    measure.check_metrics(host, args.metric)
    data_root = resolve_data_root(args.data_root)
    adapted = register(host, [args.model], args.likelihood, fitting=False, label=args.name)
    name = adapted.names([args.model])[0]
    overrides = [parse_set(text) for text in args.sets]
    job, notes = as_built_job(host, adapted, name, args.dataset, args.profile, args.seed, overrides, args.metric,
                              data_root)
    if args.checkpoint is not None:
        job = checkpoint_job(host, name, args.dataset, args.checkpoint, args.profile, args.seed, overrides,
                             args.metric, data_root, resolve_device(args.device))
    _notes(notes)
    out = measure.output_dir(args, "evaluate")
    tracking = trackers.open_tracking(host, trackers.settings(args), "evaluate")
    store, summary = measure.run_jobs(host, [job], out, args, save_artifacts=not args.no_artifacts, tracking=tracking)
    how = f"weights from {args.checkpoint}" if args.checkpoint is not None else "as built"
    meta = {"evaluated": f"{args.model} {how}", "profile": args.profile, "device": args.device}
    return measure.report(host, store, summary, out, [job], meta, args, saving=not args.no_artifacts,
                          tracking=tracking)


def saved_jobs(host, directory, metrics, data_root) -> list:
    """:func:`harness.evaluation.jobs_from_run` for DIR, with DIR's py: models (from DIR/config.toml)
    registered first, so their saved objects are restored and measured too."""
    from harness.adapters import register
    from harness.config import read_config
    from harness.evaluation import jobs_from_run
    from harness.worker import DatasetCache

    config = Path(directory) / "config.toml"
    run = read_config(config).run if config.is_file() else {}
    adapted = register(host, run.get("models"), run.get("likelihood"), fitting=False)
    jobs = jobs_from_run(host, directory, metrics, data_root)
    if adapted.plugins:
        changed, notes = adapted.check(host, jobs, DatasetCache(Path(data_root)))
        if changed:
            jobs = jobs_from_run(host, directory, metrics, data_root)
        _notes(notes)
    return jobs


# ----------------------------------------------------------------------------- evaluate-samples


def samples_job(host, args, profile: str, data_root):
    """The job of `evaluate-samples`: PATH's samples, or those ``--generator`` streams."""
    from harness.adapters.jobs import generator_job
    from harness.evaluation import samples_job as file_job

    if (args.path is None) == (args.generator is None):
        raise UserError("give the samples as PATH (a file or folder) or as --generator py:MODULE:FUNCTION, one of "
                        "the two")
    if args.generator is not None:
        return generator_job(host, args.generator, args.dataset, args.name, profile, args.metric, data_root)
    if args.name is None:
        raise UserError("--name LABEL is needed with PATH: the label of the samples in the tables")
    return file_job(host, args.path, args.dataset, args.name, profile, args.metric, data_root)
