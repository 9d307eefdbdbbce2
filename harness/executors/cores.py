"""The cores this process may use: its CPU affinity, capped by the CPU quota of its control group.

``os.cpu_count()`` counts the machine's logical CPUs, not what a container or a batch allocation grants.
Two limits narrow it: the affinity mask (``os.sched_getaffinity``: taskset, Slurm's CPU binding) and the
control group's CPU quota (cgroup v2 ``cpu.max``: ``quota period``; v1 ``cpu.cfs_quota_us`` and
``cpu.cfs_period_us``), which a container runtime sets for ``--cpus``. A quota of 1.5 CPUs lets two
busy threads run at 75% each, so the quota counts as its ceiling rounded down, at least one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cores() -> int:
    """The CPUs this process may be scheduled on (every logical CPU where the platform cannot say)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def own_cgroup_dirs(root: Path = CGROUP_ROOT) -> list:
    """The folders holding this process's CPU limits: its own control group's (from /proc/self/cgroup)
    and each one above it, then the root; a limit anywhere on the path applies."""
    dirs = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].strip("/")
        bases = [root] if controllers == "" else [root / c for c in ("cpu", "cpu,cpuacct", "cpuacct,cpu")
                                                  if "cpu" in controllers.split(",")]
        for base in bases:
            here = base / path if path else base
            while True:
                dirs.append(here)
                if here == base:
                    break
                here = here.parent
    return list(dict.fromkeys(dirs + [root, root / "cpu", root / "cpu,cpuacct"]))


def quota_cores(folders) -> Optional[float]:
    """The smallest CPU quota set in ``folders`` (control-group folders, v2 or v1), in CPUs (None: none)."""
    found = []
    for folder in folders:
        folder = Path(folder)
        v2 = folder / "cpu.max"
        v1_quota, v1_period = folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"
        try:
            if v2.is_file():
                quota, _, period = v2.read_text().strip().partition(" ")
                if quota != "max" and period:
                    found.append(int(quota) / int(period))
            elif v1_quota.is_file() and v1_period.is_file():
                quota, period = int(v1_quota.read_text()), int(v1_period.read_text())
                if quota > 0 and period > 0:
                    found.append(quota / period)
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def usable_cores() -> int:
    """How many jobs this process can keep busy at once: the affinity mask's CPUs, capped by the
    quota of its control group (rounded down, at least one)."""
    cores = affinity_cores()
    quota = quota_cores(own_cgroup_dirs())
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)
