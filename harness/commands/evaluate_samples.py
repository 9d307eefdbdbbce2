"""`harness evaluate-samples PATH --dataset D --name LABEL`: samples from any generator, measured with
every sample-based quality metric that applies (fidelity, precision/recall, mode coverage, ...).

PATH is a .npy / .npz array in the dataset's data space, or a folder of PNG images for an image
dataset. The samples appear in the tables as model LABEL of family ``external``, with no likelihood or
speed columns (nothing here has a likelihood to score or a model to time).
"""

from __future__ import annotations

from pathlib import Path

from harness.cli_support import adapted, measure, trackers
from harness.profiles import PROFILES

NAME = "evaluate-samples"
HELP = "measure samples from any generator (.npy/.npz, or a folder of PNGs) against a dataset"


def configure(parser) -> None:
    parser.add_argument("path", type=Path, nargs="?", metavar="PATH",
                        help="the samples: a .npy or .npz array (N, *event shape) in data space (discrete data as "
                             "levels 0..K-1, binary as 0/1), or a folder of PNG images of the dataset's size "
                             "(pixel p becomes level round(p (K-1) / 255))")
    parser.add_argument("--dataset", required=True, metavar="D", help="the dataset the samples imitate")
    parser.add_argument("--name", metavar="LABEL", help="the label of the samples in the tables (needed with PATH)")
    adapted.add_generator_option(parser)
    parser.add_argument("--profile", default="quick", choices=list(PROFILES),
                        help="the profile (default quick); each metric draws the sample count it declares for it, "
                             "the built-in sample metrics 500 at smoke, 2000 at quick, 10000 at full: PATH must "
                             "hold at least that many")
    measure.add_options(parser, "samples")


def execute(args, host) -> int:
    from harness.data import resolve_data_root
    from harness.profiles import get_profile

    profile = get_profile(args.profile)
    measure.check_metrics(host, args.metric)
    tracking = trackers.open_tracking(host, trackers.settings(args), NAME)
    out = measure.output_dir(args, "samples")
    job = adapted.samples_job(host, args, profile.name, resolve_data_root(args.data_root))  # PATH or --generator
    store, summary = measure.run_jobs(host, [job], out, args, save_artifacts=False, tracking=tracking)
    meta = {"evaluated": f"samples {args.path or args.generator} as {job.model}", "profile": profile.name}
    return measure.report(host, store, summary, out, [job], meta, args, saving=None, tracking=tracking)
