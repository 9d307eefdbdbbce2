"""Where a run's job time went, per model family: ``python tests/benchmarks/job_phases.py DIR [--wall]``.

Reads the jobs of results directory DIR (their ``details["phases"]`` and ``phases_cpu``, written by
:mod:`harness.phases`) and prints a Markdown table per family: jobs, fit, metrics (and the speed
metrics' part of them), overhead (loading data, building, saving, a worker's start-up, the dispatch,
and whatever of a job's time no phase holds) and the total, in CPU seconds (``--wall``: wall seconds).
CPU seconds do not grow with the machine's load, so they compare runs made while other work shared
the machine. docs/benchmarks.md shows its tables.
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
from pathlib import Path

MAIN = ("fit", "load", "metrics")
OUTSIDE = ("worker_start", "dispatch")  # what an isolated worker's executor adds (wall seconds only)


def speed_metric_names(db) -> set:
    """The metrics whose outputs all declare role speed, from the run's stored declarations."""
    roles = collections.defaultdict(set)
    for metric, declaration in db.execute("SELECT metric, declaration FROM outputs"):
        roles[metric].add(json.loads(declaration).get("role"))
    return {metric for metric, seen in roles.items() if seen == {"speed"}}


def job_costs(details: dict, seconds: float, speed: set, wall: bool) -> dict:
    """fit, metrics, speed (part of metrics) and overhead seconds of one job."""
    phases = details.get("phases", {})
    per_metric = details.get("metric_seconds" if wall else "metric_cpu_seconds", {})
    own = phases if wall else details.get("phases_cpu", {})
    total = seconds if wall else sum(own.values())
    outside = sum(phases.get(name, 0.0) for name in OUTSIDE)
    fit = sum(own.get(name, 0.0) for name in MAIN[:2])
    metrics = own.get("metrics", 0.0)
    return {"fit": fit, "metrics": metrics,
            "speed": sum(v for k, v in per_metric.items() if k.split("[")[0] in speed),
            "overhead": max(0.0, total - fit - metrics) + outside}


def table(path: Path, wall: bool) -> str:
    db = sqlite3.connect(f"file:{path / 'results.sqlite'}?mode=ro", uri=True)
    try:
        speed = speed_metric_names(db)
        rows = db.execute("SELECT family, seconds, details FROM jobs WHERE status != 'skipped' OR seconds > 0")
        families = collections.defaultdict(collections.Counter)
        for family, seconds, details in rows:
            costs = job_costs(json.loads(details or "{}"), float(seconds or 0.0), speed, wall)
            families[family].update(costs)
            families[family]["jobs"] += 1
    finally:
        db.close()
    unit = "wall s" if wall else "CPU s"
    lines = [f"| family | jobs | fit ({unit}) | metrics ({unit}) | of which speed | overhead ({unit}) | total |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    everything = collections.Counter()
    for family in sorted(families):
        c = families[family]
        everything.update(c)
        lines.append(_line(family, c))
    lines.append(_line("**all**", everything))
    return "\n".join(lines)


def _line(name: str, c) -> str:
    total = c["fit"] + c["metrics"] + c["overhead"]
    return (f"| {name} | {c['jobs']} | {c['fit']:.0f} | {c['metrics']:.0f} | {c['speed']:.0f} | "
            f"{c['overhead']:.0f} | {total:.0f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a results directory")
    parser.add_argument("--wall", action="store_true", help="wall seconds instead of CPU seconds")
    args = parser.parse_args(argv)
    print(table(args.dir, args.wall))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
