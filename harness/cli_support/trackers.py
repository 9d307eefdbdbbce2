"""What `run`, `evaluate` and `evaluate-samples` share about experiment trackers: the ``--tracker`` and
``--tracker-arg`` options, merged with a config file's ``[tracking]`` table, and the opened session
(:class:`harness.tracking.Tracking`) whose warnings the CLI prints."""

from __future__ import annotations

import sys
from typing import Mapping, Optional

from harness.tracking import NONE, Tracking, TrackingSettings, open_trackers, parse_tracker_args


def add_options(parser) -> None:
    group = parser.add_argument_group("experiment trackers (docs/tracking.md)")
    group.add_argument("--tracker", action="append", default=None, metavar="NAME",
                       help="also log the run to this experiment tracker (repeatable): mlflow (pip install "
                            "'harness[mlflow]'), wandb (pip install 'harness[wandb]') or a plugin's; "
                            f"`--tracker {NONE}` logs nowhere, whatever --config says")
    group.add_argument("--tracker-arg", action="append", default=[], metavar="KEY=VALUE", dest="tracker_args",
                       help="a setting for the chosen trackers (repeatable): KEY for every tracker that takes it, "
                            "TRACKER.KEY for one (e.g. experiment=toys, wandb.project=toys); `list trackers` "
                            "shows each tracker's keys")


def settings(args, from_file: Optional[Mapping] = None) -> TrackingSettings:
    """The config file's ``[tracking]`` with the flags on top: ``--tracker`` replaces the whole table (its
    trackers and their arguments), ``--tracker-arg`` beats the file's value for the same key."""
    from_file = {} if args.tracker else (from_file or {})
    trackers = list(args.tracker) if args.tracker else list(from_file.get("trackers", []))
    return TrackingSettings(trackers, {**dict(from_file.get("args") or {}), **parse_tracker_args(args.tracker_args)})


def warn(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(f"warning: {text}", file=sys.stderr)  # above a progress bar, not through it


def open_tracking(host, chosen: TrackingSettings, command: str) -> Tracking:
    """The chosen trackers, opened (a missing package or an unknown name exits 2 here, before anything runs)."""
    return open_trackers(host, chosen, warn, command)


def lines(tracking: Tracking) -> list:
    """One line per chosen tracker for the terminal: where the run is, or why the tracker stopped."""
    out = []
    for name, state in tracking.report().items():
        if "error" in state:
            out.append(f"{name}: nothing more logged after {state['error']}")
        else:
            out.append(f"{name}: logged to {state['where']}" if state["where"] else f"{name}: logged")
    return out
