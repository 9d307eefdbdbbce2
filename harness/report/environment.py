"""The environment a results directory was made in, per run: versions, device, threads, the processor's
model name, profile, seeds, run id, start and wall time, the coordinator's machine id, how its jobs
ended, and the machines (and cluster nodes) its jobs ran on with how many jobs each (from the store's
runs and jobs; docs/cluster.md says what a machine and a node are)."""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from typing import Optional

import pandas as pd

from harness.jobs import JobStatus
from harness.machine import describe

VERSION_KEYS = ("harness", "torch", "python")
MACHINE_KEYS = ("device", "gpu", "threads", "processor", "platform")


def _when(ts) -> str:
    if ts is None or pd.isna(ts):
        return "-"
    return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def wall_time(seconds: Optional[float]) -> str:
    if seconds is None or pd.isna(seconds):
        return "unfinished"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min"


def run_rows(runs: list, df: Optional[pd.DataFrame] = None) -> list:
    """One ordered dict per run: what a reader needs to reproduce or judge its numbers."""
    rows = []
    for run in runs:
        info = run.get("info") or {}
        row = {"run id": run["run_id"], "profile": run.get("profile") or "-",
               "seeds": ", ".join(map(str, info.get("seeds", []))) or "-",
               "started": _when(run.get("started")),
               "wall time": wall_time(None if run.get("finished") is None
                                      else run["finished"] - run["started"])}
        machine = info.get("machine") or {}
        for key in MACHINE_KEYS + VERSION_KEYS:
            if key in info:
                row[key] = str(info[key])
        named = (machine.get("fingerprint") or {}).get("processor")
        if named:  # the processor's model name; some runs recorded only its architecture ("x86_64") above
            row["processor"] = str(named)
        if machine.get("id"):
            # The id the regression gate matches baseline speed sections by (docs/regression.md).
            row["machine id"] = machine["id"]
        if df is not None and not df.empty and "run_id" in df:
            mine = df[df["run_id"] == run["run_id"]]
            if not mine.empty and "key" in mine:
                status = mine.groupby("key")["status"].agg(_job_status)
                row["jobs"] = ", ".join(f"{n} {s}" for s, n in status.value_counts().sort_index().items())
                row.update(where_jobs_ran(mine, machine))
        plugins = info.get("plugins") or {}
        if plugins:
            row["plugins"] = ", ".join(f"{k} {v}" for k, v in sorted(plugins.items()))
        rows.append(row)
    return rows


def where_jobs_ran(rows: pd.DataFrame, machine: dict) -> dict:
    """``{"machines": ..., "nodes": ...}`` for one run's rows: each machine its jobs ran on (a job's node
    record, else the run's ``machine``) with its description and job count, and each cluster node with
    its count ("nodes" only when jobs ran on cluster nodes). Skipped jobs ran nowhere."""
    if "job_details" not in rows:
        return {}
    machines, nodes, described = Counter(), Counter(), {}
    ran = rows[rows["status"] != JobStatus.SKIPPED].drop_duplicates("key")
    for raw in ran["job_details"]:
        details = json.loads(raw) if isinstance(raw, str) and raw else {}
        node = details.get("node") or {}
        if node:
            mid = details.get("machine")
            described.setdefault(mid, node.get("fingerprint") or {})
            nodes[f"{node.get('host') or '?'} (Ray node {str(node.get('id', '?'))[:8]})"] += 1
        elif details.get("machine", machine.get("id")) is not None:  # it ran where the run records
            mid = machine.get("id")
            described.setdefault(mid, machine.get("fingerprint") or {})
        else:  # on a node that was lost before it answered
            mid = None
        machines[mid] += 1
    out = {}
    if machines:
        out["machines"] = "; ".join(
            (f"`{mid}` ({describe(described.get(mid) or {})})" if mid else "not known")
            + f": {n} job{'s' if n != 1 else ''}" for mid, n in sorted(machines.items(), key=lambda kv: (kv[0] is None, str(kv[0]))))
    if nodes:
        out["nodes"] = "; ".join(f"{name}: {n} job{'s' if n != 1 else ''}" for name, n in sorted(nodes.items()))
    return out


def _job_status(statuses) -> str:
    """A job's status from its rows: failed if its only row failed, skipped if skipped, else ok."""
    s = set(statuses)
    if s == {JobStatus.FAILED}:
        return JobStatus.FAILED
    if s == {JobStatus.SKIPPED}:
        return JobStatus.SKIPPED
    return JobStatus.OK if JobStatus.OK in s else sorted(s)[0]


def headline(runs: list) -> str:
    """One line: run ids, profile, seeds, device."""
    if not runs:
        return ""
    last = runs[-1]
    info = last.get("info") or {}
    ids = ", ".join(r["run_id"] for r in runs)
    parts = [f"run {ids}", f"profile {last.get('profile') or '-'}"]
    if info.get("seeds"):
        parts.append("seeds " + ", ".join(map(str, info["seeds"])))
    if info.get("device"):
        parts.append(f"device {info['device']}" + (f" ({info['gpu']})" if info.get("gpu") else ""))
    return "; ".join(parts)
