"""The machine a run ran on: a fingerprint of what sets its speed, and a short calibration.

Speed figures from two machines are not comparable as they stand, so every run records

- a **fingerprint** (:func:`fingerprint`): processor model, physical cores, logical CPUs and the
  CPUs this process may use, torch's thread count, memory, the run's device and its name, the torch
  version and its BLAS and CPU-kernel build, and how jobs were executed. Its hash
  (:func:`machine_id`) names the machine: two runs with the same id ran on the same kind of machine
  with the same settings, so their speed figures are compared as they stand;
- a **calibration** (:class:`Calibration`): a few fixed workloads on the run's device, timed with
  the speed metrics' recipe (:mod:`harness.timing`: a warm-up, then timed repeats, blocks of several
  calls when a call is short; the median seconds per call) in interleaved rounds, once before the
  jobs and once after them, and single rounds between jobs when they run in this process (the runner
  says how often: ``harness.runner.CALIBRATION_INTERVAL_S``). A
  machine shared with other work is not equally busy all along a run, so each workload's figure is
  the median over those samples: the machine as the jobs found it. :func:`speed_factor` turns two
  calibrations into the factor by which one machine is faster than the other: the geometric mean,
  over the workloads both measured, of the ratio of their times.

Jobs that run on the nodes of a cluster are timed there, not on the coordinator: each such node makes
its own record once per run (:func:`node_machine`), and each job records the machine it ran on
(docs/cluster.md), so its speed figures are set against that machine's calibration.

The workloads cover the three regimes the built-in models live in: a 512x512 float32 matrix product
(BLAS-bound), a small 2-D convolution (the convolution kernels of the image models) and a tiny MLP's
forward and backward pass (bound by per-operation overhead in Python and the dispatcher, like the
toy models). A full calibration takes about a second, a round between jobs a few milliseconds.
docs/regression.md says how the regression gate uses them and how far apart normalised speed figures
of the built-in models fall between machines.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch

from harness.timing import calls_per_block, median, stopwatch, synchronize, time_blocks

# Bumped whenever a workload changes: calibrations of different versions are not comparable.
CALIBRATION_VERSION = 1

# The fingerprint fields that name a machine (see machine_id); the others are informative.
IDENTITY_FIELDS = ("processor", "physical_cores", "logical_cpus", "usable_cpus", "torch_threads", "memory_gib",
                   "device", "device_name", "torch", "blas", "cpu_capability", "executor", "workers")

# Seconds of timed rounds (one block of each workload a round), the most they may take when
# MIN_ROUNDS forces more (a loaded machine), and the bounds on the number of rounds: about a second in
# all on an idle machine, about 3 s at most.
CALIBRATION_SECONDS, MAX_SECONDS = 0.75, 2.0
MIN_ROUNDS, MAX_ROUNDS = 5, 100
MIN_BLOCK_SECONDS = 2e-3  # a timed repeat spans at least this long (a block of calls when a call is shorter)
WARMUP_CALLS = 2


# --------------------------------------------------------------------------- fingerprint


def _cpuinfo() -> dict:
    """Processor model and physical core count from /proc/cpuinfo (Linux); {} elsewhere."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    model, cores = None, set()
    for block in text.split("\n\n"):
        fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()))
        model = model or fields.get("model name") or fields.get("Processor") or fields.get("cpu model")
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    info = {}
    if model:
        info["processor"] = re.sub(r"\s+", " ", model)
    if cores:
        info["physical_cores"] = len(cores)
    return info


def _memory_gib() -> Optional[float]:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError, AttributeError):
        return None


def _blas() -> str:
    """The BLAS torch was built with (``BLAS_INFO`` of ``torch.__config__.show()``), e.g. ``mkl``."""
    try:
        match = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    except Exception:  # a torch build without the config report
        return ""
    return match.group(1) if match else ""


def _cpu_capability() -> str:
    """The CPU kernels torch dispatches to (``AVX2``, ``AVX512``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return ""


def fingerprint(device="cpu", executor: str = "local", workers: int = 1) -> dict:
    """What sets this machine's speed for a run on ``device`` (see the module docstring)."""
    device = torch.device(device)
    cpu = _cpuinfo()
    processor = cpu.get("processor") or platform.processor() or platform.machine() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "processor": processor,
        "physical_cores": cpu.get("physical_cores"),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": _memory_gib(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else processor,
        "torch": torch.__version__.split("+")[0],
        "blas": _blas(),
        "cpu_capability": _cpu_capability(),
        "executor": executor,
        "workers": int(workers),
        "platform": platform.platform(),
    }
    return info


def machine_id(fp: Mapping) -> str:
    """A short hash of the fingerprint's identity fields: equal ids, the same kind of machine and settings."""
    ident = {k: fp.get(k) for k in IDENTITY_FIELDS}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def describe(fp: Mapping) -> str:
    """One line for people: ``AMD EPYC, 2 cores / 2 CPUs, 2 threads, 23 GiB, cpu, torch 2.14.1 (mkl, AVX512)``."""
    if not fp:
        return "unknown machine"
    parts = [str(fp.get("device_name") or fp.get("processor") or "?")]
    if fp.get("device") == "cuda" and fp.get("processor"):
        parts.append(f"host {fp['processor']}")
    cores = fp.get("physical_cores")
    parts.append(f"{cores if cores is not None else '?'} cores / {fp.get('usable_cpus', '?')} CPUs")
    parts.append(f"{fp.get('torch_threads', '?')} threads")
    if fp.get("memory_gib") is not None:
        parts.append(f"{fp['memory_gib']:g} GiB")
    if fp.get("executor") and fp.get("executor") != "local":
        parts.append(f"{fp['executor']} executor x{fp.get('workers', 1)}")
    build = ", ".join(str(fp[k]) for k in ("blas", "cpu_capability") if fp.get(k))
    parts.append(f"{fp.get('device', '?')}, torch {fp.get('torch', '?')}" + (f" ({build})" if build else ""))
    return ", ".join(parts)


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Workload:
    """A fixed piece of work: ``make(device)`` builds its inputs and returns the call to time."""

    name: str
    description: str
    make: Callable[[torch.device], Callable[[], object]]


def _matmul(device):
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(512, 512, generator=g).to(device) for _ in range(2))
    return lambda: a @ b


def _conv2d(device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16, 32, 32, generator=g).to(device)
    w = torch.randn(32, 16, 3, 3, generator=g).to(device)
    return lambda: torch.nn.functional.conv2d(x, w, padding=1)


def _small_ops(device):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 2, generator=g).to(device)
    weights = [torch.randn(i, o, generator=g).to(device).requires_grad_() for i, o in ((2, 32), (32, 32), (32, 2))]

    def step():
        h = x
        for w in weights[:-1]:
            h = torch.tanh(h @ w)
        loss = (h @ weights[-1]).pow(2).mean()
        loss.backward()
        for w in weights:
            w.grad = None

    return step


WORKLOADS = (
    Workload("matmul", "512x512 float32 matrix product", _matmul),
    Workload("conv2d", "3x3 convolution, 16->32 channels, batch 8 of 32x32 float32", _conv2d),
    Workload("small_ops", "forward and backward of a 2-32-32-2 tanh MLP on 64 points (overhead-bound)", _small_ops),
)


def _block_size(call: Callable[[], object], watch) -> int:
    """Warm ``call`` up, then how many calls a timed repeat needs to span MIN_BLOCK_SECONDS."""
    for _ in range(WARMUP_CALLS):
        call()
    return calls_per_block(time_blocks(call, 1, 1, watch)[0], MIN_BLOCK_SECONDS)


class Calibration:
    """The workloads' timings over a run: full calibrations (interleaved rounds within a time budget)
    and single rounds between jobs, so the figures describe the machine as the jobs found it, not only
    at one moment. Each full calibration adds one sample per workload (its median seconds per call),
    each single round one; a workload's figure is the median of its samples."""

    def __init__(self, device="cpu", workloads=WORKLOADS):
        self.device = torch.device(device)
        self.workloads = tuple(workloads)
        self._calls: Optional[list] = None
        self._watch = None
        self.blocks: dict = {}
        self.samples: dict = {w.name: [] for w in self.workloads}
        self.per_call: dict = {w.name: [] for w in self.workloads}  # every round's seconds per call
        self.full_runs = self.between_jobs_rounds = self.rounds = 0
        self.took = 0.0

    def _prepare(self) -> None:
        if self._calls is None:
            self._calls = [(w, w.make(self.device)) for w in self.workloads]
            self._watch = stopwatch(self.device)
            self.blocks = {w.name: _block_size(call, self._watch) for w, call in self._calls}

    def _round(self, warm: bool = False) -> dict:
        """One block of calls of each workload (after one untimed call each if ``warm``): seconds per call."""
        out = {}
        for w, call in self._calls:
            if warm:
                call()
                synchronize(self.device)
            calls = self.blocks[w.name]
            out[w.name] = time_blocks(call, calls, 1, self._watch)[0] / calls
            self.per_call[w.name].append(out[w.name])
        self.rounds += 1
        return out

    def full(self, seconds: float = CALIBRATION_SECONDS) -> "Calibration":
        """Interleaved rounds until ``seconds`` have passed and MIN_ROUNDS were made, but no more than
        MAX_ROUNDS rounds or MAX_SECONDS (at least 3 rounds); one sample per workload, their medians."""
        began = time.perf_counter()
        self._prepare()
        rounds: dict = {w.name: [] for w in self.workloads}
        timed_from, n = time.perf_counter(), 0
        limit = max(seconds, MAX_SECONDS)
        while True:
            elapsed = time.perf_counter() - timed_from
            if n >= MAX_ROUNDS or (n >= 3 and elapsed >= limit) or (n >= MIN_ROUNDS and elapsed >= seconds):
                break
            for name, t in self._round().items():
                rounds[name].append(t)
            n += 1
        for name, times in rounds.items():
            self.samples[name].append(median(times))
        self.full_runs += 1
        self.took += time.perf_counter() - began
        return self

    def between_jobs(self) -> None:
        """One round (each workload warmed by one call first): one more sample per workload."""
        began = time.perf_counter()
        self._prepare()
        for name, t in self._round(warm=True).items():
            self.samples[name].append(t)
        self.between_jobs_rounds += 1
        self.took += time.perf_counter() - began

    def result(self) -> dict:
        """``{"version", "device", "rounds", "full", "between_jobs", "took", "workloads": {name: {"seconds":
        the median of its samples, "samples", "block", "min", "max" (over every round), "description"}}}``."""
        workloads = {w.name: {"seconds": median(self.samples[w.name]), "samples": len(self.samples[w.name]),
                              "block": self.blocks[w.name], "min": min(self.per_call[w.name]),
                              "max": max(self.per_call[w.name]), "description": w.description}
                     for w in self.workloads if self.samples[w.name]}
        return {"version": CALIBRATION_VERSION, "device": str(self.device), "rounds": self.rounds,
                "full": self.full_runs, "between_jobs": self.between_jobs_rounds, "took": self.took,
                "workloads": workloads}


def speed_factor(reference: Optional[Mapping], current: Optional[Mapping]) -> Optional["SpeedFactor"]:
    """How many times faster the ``current`` calibration's machine is than the ``reference``'s: the
    geometric mean over shared workloads of reference seconds / current seconds. None when either is
    missing, their versions differ or they share no workload."""
    if not reference or not current or reference.get("version") != current.get("version"):
        return None
    ref, cur = reference.get("workloads", {}), current.get("workloads", {})
    ratios = {}
    for name in sorted(set(ref) & set(cur)):
        r, c = ref[name].get("seconds"), cur[name].get("seconds")
        if r and c and r > 0 and c > 0 and math.isfinite(r) and math.isfinite(c):
            ratios[name] = r / c
    if not ratios:
        return None
    return SpeedFactor(math.exp(sum(math.log(v) for v in ratios.values()) / len(ratios)), ratios)


@dataclass(frozen=True)
class SpeedFactor:
    """``factor``: how many times faster the current machine is (geometric mean of ``ratios``, per workload)."""

    factor: float
    ratios: dict

    def describe(self) -> str:
        each = ", ".join(f"{k} x{v:.3g}" for k, v in self.ratios.items())
        return f"x{self.factor:.3g} ({each})"


def pooled(calibrations: list) -> Optional[dict]:
    """One calibration from several (runs of one results set): the median time per workload."""
    calibrations = [c for c in calibrations if c]
    if not calibrations:
        return None
    if len(calibrations) == 1:
        return calibrations[0]
    versions = {c.get("version") for c in calibrations}
    if len(versions) != 1:
        return None
    names = set.intersection(*(set(c.get("workloads", {})) for c in calibrations))
    return {"version": versions.pop(), "device": calibrations[0].get("device"), "pooled": len(calibrations),
            "workloads": {n: {"seconds": median([c["workloads"][n]["seconds"] for c in calibrations])}
                          for n in sorted(names)}}


def machine_info(device="cpu", executor: str = "local", workers: int = 1,
                 calibration: Optional[Calibration] = None) -> dict:
    """What a run records about its machine: ``{"id", "fingerprint", "calibration"}`` (a full
    calibration made now unless ``calibration`` is given)."""
    fp = fingerprint(device, executor, workers)
    calibration = calibration or Calibration(device).full()
    return {"id": machine_id(fp), "fingerprint": fp, "calibration": calibration.result()}


def node_machine(device, threads: int, executor: str, workers: int) -> dict:
    """What a cluster node that runs jobs records about itself for a run, made there once (see
    docs/cluster.md): :func:`machine_info` as the node's jobs see the machine, each with ``threads`` torch
    threads and ``workers`` of them at once, with a full calibration made now with the same recipe as
    the coordinator's."""
    torch.set_num_threads(max(1, int(threads)))
    return machine_info(device, executor, workers)
