"""`harness history`: every metric as a curve over the project's commits (harness/history/,
docs/regression.md "Metric history").

- ``history add DIR``: append a results directory's summary to the history file, keyed by commit;
- ``history run COMMIT... --run-args ARGS``: run the same jobs at several commits (a worktree each, the
  current environment) and add each to the history;
- ``history report --out SITE``: the static site (an index and a page per dataset);
- ``history regressions``: the steps that made a metric worse; with ``--since COMMIT``, exit 1 when one
  newer than COMMIT is still worse (for CI);
- ``history bisect BAD GOOD --metric ID --model M --dataset D``: the commit that changed a metric.

Exit codes: 0 ok, 1 a regression newer than --since / no commit found, 2 usage error.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from pathlib import Path

from harness.contracts import UserError
from harness.profiles import PROFILES

NAME = "history"
HELP = "metric history across commits: add runs, build a static site, list regressions, bisect a change"
DEFAULT_HISTORY = Path("reports") / "history.jsonl"


def _common(p, formats=("table", "md", "json")) -> None:
    p.add_argument("--format", choices=list(formats), default="table",
                   help="table for people (default), md for Markdown (a CI summary), json for machines")


def _history_option(p) -> None:
    p.add_argument("--history", type=Path, default=DEFAULT_HISTORY, metavar="FILE",
                   help=f"the history file, JSON Lines (default {DEFAULT_HISTORY})")


def _analysis_options(p) -> None:
    from harness.history.steps import DEFAULT_ALPHA

    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help=f"false-positive rate of step detection per curve (default {DEFAULT_ALPHA:g})")
    p.add_argument("--no-floor", action="store_true",
                   help="count every significant worsening step, even one within the metric's declared tolerance")
    p.add_argument("--normalise", action="store_true",
                   help="speed figures of every machine on one curve, scaled by the runs' calibrations to the "
                        "newest calibrated machine (default: one curve per machine)")


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="history_command", metavar="SUBCOMMAND", parser_class=type(parser))
    parser.set_defaults(history_usage=parser.format_help)
    add = sub.add_parser("add", help="append a results directory to the history",
                         description="Append the summary of a results directory (one line of the history file), "
                                     "keyed by commit, date, machine, environment and each number's protocol.")
    add.add_argument("results", type=Path, metavar="DIR", help="a directory written by `harness run --out`")
    _history_option(add)
    add.add_argument("--commit", metavar="SHA",
                     help="the commit the run was made at (default: HEAD of the git repository holding DIR, else "
                          "of the current directory)")
    _common(add)
    run = sub.add_parser("run", help="run the same jobs at several commits and add each to the history",
                         description="For each COMMIT: check it out as a git worktree, run `python -m harness run "
                                     "RUN_ARGS` there with the current environment, and add the results to the "
                                     "history. Builds a history of past commits.")
    run.add_argument("commits", nargs="+", metavar="COMMIT", help="commits of the repository of the current directory")
    run.add_argument("--run-args", required=True, metavar="ARGS",
                     help='the arguments of `harness run`, quoted, e.g. "--all --profile smoke --seeds 3" (not --out)')
    _history_option(run)
    run.add_argument("--work", type=Path, metavar="DIR",
                     help="keep each commit's results directory and log here (default: a temporary folder, removed)")
    run.add_argument("--data-root", type=Path, default=None,
                     help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    _common(run)
    report = sub.add_parser("report", help="build the static site of the history",
                            description="Write a self-contained static site: index.html and one page per dataset "
                                        "with a chart per metric over commits, models overlaid.")
    _history_option(report)
    report.add_argument("--out", type=Path, required=True, metavar="SITE", help="the folder the site goes in")
    _analysis_options(report)
    _common(report)
    reg = sub.add_parser("regressions", help="list the steps that made a metric worse",
                         description="List the steps that made a metric worse (direction-aware, beyond the "
                                     "metric's tolerance floor), with the commit range, size and significance.")
    _history_option(reg)
    reg.add_argument("--since", metavar="COMMIT",
                     help="exit 1 when a regression after COMMIT is still worse (for CI: the last commit checked; "
                          "one the history does not hold is placed by its committer date)")
    _analysis_options(reg)
    _common(reg)
    bis = sub.add_parser("bisect", help="find the commit that changed a metric",
                         description="Measure the metric at commits between GOOD and BAD (a git worktree each, the "
                                     "current environment) until the commit that changed it is found.")
    bis.add_argument("bad", metavar="BAD", help="a commit with the changed value (the newer one)")
    bis.add_argument("good", metavar="GOOD", help="a commit with the old value (an ancestor of BAD)")
    bis.add_argument("--metric", required=True, metavar="ID", help="the metric identity, e.g. nll or fid@500")
    bis.add_argument("--model", required=True, metavar="M")
    bis.add_argument("--dataset", required=True, metavar="D")
    bis.add_argument("--profile", default="smoke", choices=list(PROFILES),
                     help="the profile the jobs run with (default smoke)")
    bis.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1 at each commit (default 1)")
    bis.add_argument("--work", type=Path, metavar="DIR",
                     help="keep each commit's results and log here (default: a temporary folder, removed)")
    bis.add_argument("--no-reuse", action="store_true",
                     help="train at every commit, even where the model's code did not change")
    bis.add_argument("--data-root", type=Path, default=None,
                     help="where user-supplied data lives (default $HARNESS_DATA_ROOT or ./datasets)")
    _common(bis)


def execute(args, host) -> int:
    handlers = {"add": _add, "run": _run, "report": _report, "regressions": _regressions, "bisect": _bisect}
    if not args.history_command:
        print(args.history_usage(), file=sys.stderr)
        return 2
    return handlers[args.history_command](args, host)


def _table(rows: list, columns: list, fmt: str) -> str:
    import pandas as pd

    if not rows:
        return "(none)\n"
    frame = pd.DataFrame(rows).reindex(columns=columns).fillna("")
    return frame.to_markdown(index=False, tablefmt="pipe" if fmt == "md" else "simple") + "\n"


def _json(doc) -> None:
    import json

    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _record_set(results: Path, commit, host):
    """The history line of the results directory ``results`` made at ``commit``."""
    import datetime as dt

    from harness.commands.baseline import installed_outputs
    from harness.history.format import RecordSet
    from harness.history.records import records_from_results

    summary = records_from_results(results, outputs=installed_outputs(host))
    return RecordSet(commit=commit.sha, commit_date=commit.date, subject=commit.subject, date=summary.date,
                     added=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), source=summary.source,
                     runs=summary.runs, machines=summary.machines, environment=summary.environment,
                     records=[r.as_dict() for r in summary.records])


def _add(args, host) -> int:
    from harness.history import git
    from harness.history.format import append

    commit = git.commit_of([args.results, Path.cwd()], args.commit)
    record_set = _record_set(args.results, commit, host)
    appended = append(args.history, record_set)
    datasets = sorted({r["dataset"] for r in record_set.records})
    if args.format == "json":
        _json({"history": str(args.history), "appended": appended, "commit": commit.sha,
               "records": len(record_set.records), "datasets": datasets, "machines": sorted(record_set.machines)})
    elif appended:
        print(f"appended {len(record_set.records)} records of {args.results} at commit {commit.short} "
              f"({len(datasets)} datasets) to {args.history}")
    else:
        print(f"{args.results} at commit {commit.short} is in {args.history} already; nothing appended")
    return 0


def _run(args, host) -> int:
    import shlex

    from harness.data import resolve_data_root
    from harness.history import git
    from harness.history.format import append
    from harness.history.worktrees import checkout, run_harness

    run_args = shlex.split(args.run_args)
    if any(a == "--out" or a.startswith("--out=") for a in run_args):
        raise UserError("--run-args must not name --out: each commit's results go under --work")
    repo = git.toplevel(Path.cwd())
    if repo is None:
        raise UserError("history run runs inside the git repository whose commits to run; cd into it")
    commits = [git.resolve(repo, name) for name in args.commits]
    work = (args.work or Path(tempfile.mkdtemp(prefix="harness-history-"))).resolve()
    data_root = resolve_data_root(args.data_root).resolve()
    rows = []
    try:
        for commit in commits:
            name = commit.sha[:12]
            out, log = work / "runs" / name, work / "logs" / f"{name}.log"
            print(f"{commit.short} running: python -m harness run {args.run_args}", file=sys.stderr)
            with checkout(repo, commit.sha, work / "trees" / name) as tree:
                code = run_harness(tree, ["run", *run_args, "--out", str(out), "--no-progress"], log, data_root)
            row = {"commit": commit.short, "exit": code, "records": 0, "appended": False, "log": str(log), "note": ""}
            try:
                record_set = _record_set(out, commit, host)
                row.update(records=len(record_set.records), appended=append(args.history, record_set))
            except UserError as exc:
                row["note"] = str(exc)
            rows.append(row)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.format == "json":
        _json({"history": str(args.history), "commits": rows})
    else:
        columns = ["commit", "exit", "records", "appended", "note"] + (["log"] if args.work else [])
        print(_table(rows, columns, args.format), end="")
        print(f"history: {args.history}")
    return 0 if all(r["records"] for r in rows) else 1


def _load(args):
    from harness.history.format import read_history
    from harness.history.series import build

    return build(read_history(args.history), normalise=args.normalise)


def _report(args, host) -> int:
    from harness.history.regressions import regressions
    from harness.history.site import write_site

    history = _load(args)
    paths = write_site(history, args.out, str(args.history), args.alpha, floor=not args.no_floor)
    found = regressions(history, args.alpha, floor=not args.no_floor)
    if args.format == "json":
        _json({"index": str(paths["index"]), "pages": {k: str(v) for k, v in paths["pages"].items()},
               "regressions": len(found)})
    else:
        print(f"wrote {paths['index']} and {len(paths['pages'])} dataset page(s) ({len(history.commits)} commits, "
              f"{len(found)} regression(s))")
    return 0


def _fmt(value, se=None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.5g}" + (f" ± {se:.2g}" if se is not None and math.isfinite(se) else "")


def _since(history, name: str) -> int:
    """The place of commit ``name`` in the history; one it does not hold is placed by its committer date,
    read from the git repository of the current directory."""
    from harness.history import git

    repo = git.toplevel(Path.cwd())
    date = None
    if repo is not None and not any(c.sha.startswith(name) for c in history.commits):
        try:
            date = git.resolve(repo, name).date
        except git.GitError:
            pass
    return history.position(name, date)


def _regressions(args, host) -> int:
    from harness.history.regressions import newer_than, regressions

    history = _load(args)
    found = regressions(history, args.alpha, floor=not args.no_floor)
    failing = newer_than(found, _since(history, args.since)) if args.since else []
    if args.format == "json":
        _json({"history": str(args.history), "alpha": args.alpha, "since": args.since,
               "regressions": [f.to_dict() for f in found], "failing": [f.to_dict() for f in failing]})
    else:
        rows = [{"dataset": f.series.key.dataset, "model": f.series.key.model, "metric": f.series.key.id,
                 "machine": f.series.key.machine or "", "commits (good..bad)": f"{f.good[:10]}..{f.bad[:10]}",
                 "before": _fmt(f.before, f.before_se), "after": _fmt(f.after, f.after_se), "change": f.change(),
                 "p": f"{f.p:.2g}", "now": "still worse" if f.still_worse else "recovered"} for f in found]
        columns = ["dataset", "model", "metric", "machine", "commits (good..bad)", "before", "after", "change", "p",
                   "now"]
        if args.format == "md":
            print(f"## Metric history: {len(found)} regression(s)\n")
        print(_table(rows, columns, args.format), end="")
        if args.format == "md" and found:
            print("\nTo find the commit: " + "; ".join(f"`{f.to_dict()['bisect']}`" for f in found[:5]))
    if failing:
        print(f"{len(failing)} regression(s) after {args.since} still worse", file=sys.stderr)
        return 1
    return 0


def _bisect(args, host) -> int:
    from harness.data import resolve_data_root
    from harness.history import git
    from harness.history.bisect import bisect
    from harness.history.commit_runs import CommitRunner, Target, model_paths

    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    repo = git.toplevel(Path.cwd())
    if repo is None:
        raise UserError("history bisect runs inside the git repository to bisect; cd into it")
    host.model(args.model)  # unknown names exit 2 with a suggestion
    host.dataset(args.dataset)
    target = Target(args.metric, args.model, args.dataset, args.profile, args.seeds)
    host.metric(target.metric_name)
    good, bad = git.resolve(repo, args.good), git.resolve(repo, args.bad)
    chain = git.first_parent_chain(repo, good.sha, bad.sha)
    work = args.work or Path(tempfile.mkdtemp(prefix="harness-bisect-"))
    runner = CommitRunner(repo, target, work, resolve_data_root(args.data_root).resolve(),
                          model_paths(host, args.model, repo), reuse=not args.no_reuse)

    def progress(m, verdict):
        how = f"reused models of {m.reused_from[:10]}" if m.reused_from and m.value is not None else m.how
        value = _fmt(m.value, m.stderr) if m.value is not None else m.reason
        print(f"{m.commit.short} {verdict:7} {value} ({how})", file=sys.stderr)

    print(f"bisecting {len(chain)} commit(s) from {good.short} (good) to {bad.short} (bad): "
          f"{args.metric} of {args.model} on {args.dataset}", file=sys.stderr)
    try:
        result = bisect(runner, good, bad, chain, progress)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.format == "json":
        _json({**result.to_dict(), "metric": args.metric, "model": args.model, "dataset": args.dataset})
    else:
        rows = [{**r, "commit": r["commit"][:10], "value": _fmt(r["value"], r["stderr"]) or r["reason"]}
                for r in result.rows()]
        print(_table(rows, ["commit", "verdict", "value", "how", "subject"], args.format), end="")
        print(("\n" if args.format == "md" else "") + result.message)
        if result.caution:
            print("caution: " + result.caution)
    return 0 if result.found else 1
