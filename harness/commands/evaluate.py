"""`harness evaluate`: measure models without training them.

- ``evaluate DIR``: the models a run saved under DIR/artifacts, re-measured (``--metric`` to choose).
- ``evaluate --model NAME --checkpoint FILE --dataset D``: weights trained elsewhere for a registered
  model, measured with every compatible metric.

Results and reports go to a new directory (``--out``), written as `run` writes them; each job's details
say the model was loaded and from where, and results.csv's ``source`` column says ``artifact`` or
``checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

from harness.cli_support import adapted, measure, trackers
from harness.profiles import PROFILES
from harness.contracts import UserError

NAME = "evaluate"
HELP = "measure saved models (evaluate DIR) or weights trained elsewhere (--model --checkpoint) without training"


def configure(parser) -> None:
    parser.add_argument("directory", type=Path, nargs="?", metavar="DIR",
                        help="a results directory whose saved models (DIR/artifacts) to re-measure")
    weights = parser.add_argument_group("weights trained elsewhere (instead of DIR)")
    weights.add_argument("--model", metavar="NAME", help="the registered model the weights are for, or an object of "
                                                         "your own code, py:PACKAGE.MODULE:FACTORY (measured as "
                                                         "built, or with --checkpoint its module's weights)")
    weights.add_argument("--checkpoint", type=Path, metavar="FILE",
                         help="the weights: a .safetensors file, or a torch file holding only tensors (loaded with "
                              "weights_only=True; a pickle that needs code is refused, never run); the names are "
                              "those of the model's export_state()")
    weights.add_argument("--dataset", metavar="D", help="the dataset to measure on")
    weights.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE", dest="sets",
                         help="a hyperparameter the weights were trained with (repeatable), as for `run --set`")
    weights.add_argument("--profile", default="quick", choices=list(PROFILES),
                         help="evaluation sizes (default quick; DIR's models keep the profile they were trained with)")
    weights.add_argument("--seed", type=int, default=0, help="seed of the metrics' random draws (default 0)")
    measure.add_options(parser, "evaluate")
    adapted.add_model_options(parser, NAME)
    parser.add_argument("--no-artifacts", action="store_true",
                        help="do not save the measured models under --out/artifacts")


def execute(args, host) -> int:
    from harness.data import resolve_data_root
    from harness.evaluation import checkpoint_job

    if adapted.is_reference(args.model):
        return adapted.evaluate(args, host)
    from_weights = any(v is not None for v in (args.model, args.checkpoint, args.dataset)) or args.sets
    if args.directory is not None and from_weights:
        raise UserError("give either DIR (saved models) or --model, --checkpoint and --dataset (weights), not both")
    measure.check_metrics(host, args.metric)
    tracking = trackers.open_tracking(host, trackers.settings(args), NAME)
    data_root = resolve_data_root(args.data_root)
    if args.directory is not None:
        out = measure.output_dir(args, "evaluate", refuse=[args.directory])
        jobs = adapted.saved_jobs(host, args.directory, args.metric, data_root)  # jobs_from_run, py: models too
        meta = {"evaluated": f"saved models of {args.directory}"}
    elif from_weights:
        missing = [flag for flag, v in (("--model", args.model), ("--checkpoint", args.checkpoint),
                                        ("--dataset", args.dataset)) if v is None]
        if missing:
            raise UserError(f"evaluating weights needs --model, --checkpoint and --dataset (missing: "
                            f"{', '.join(missing)})")
        from harness.commands.run import resolve_device
        from harness.hparams import parse_set

        profile = args.profile
        out = measure.output_dir(args, "evaluate")
        overrides = [parse_set(text) for text in args.sets]
        jobs = [checkpoint_job(host, args.model, args.dataset, args.checkpoint, profile, args.seed, overrides,
                               args.metric, data_root, resolve_device(args.device))]
        meta = {"evaluated": f"{args.model} weights from {args.checkpoint}"}
    else:
        raise UserError("say what to evaluate: DIR (a results directory with saved models), or --model NAME "
                        "--checkpoint FILE --dataset D")
    store, summary = measure.run_jobs(host, jobs, out, args, save_artifacts=not args.no_artifacts, tracking=tracking)
    meta.update({"profile": ", ".join(sorted({j.profile for j in jobs})), "device": args.device})
    return measure.report(host, store, summary, out, jobs, meta, args, saving=not args.no_artifacts,
                          tracking=tracking)
