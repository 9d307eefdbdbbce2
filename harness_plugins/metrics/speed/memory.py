"""Peak memory of one call: the most memory the call allocated and had not yet freed at any moment.

The figure is what the call itself needs on top of what was already allocated (model parameters,
caches), so two models' figures differ by what their sampling allocates, and a job's figure does not
depend on what ran before it in the process. On CUDA it is ``max_memory_allocated`` after
``reset_peak_memory_stats``, minus ``memory_allocated`` before the call. On CPU torch keeps no such
statistics; the three ways to get them compare as follows:

- ``tracemalloc`` sees only allocations made through Python's allocator: torch's tensors come from its
  C++ allocator (``c10::alloc_cpu``) and are invisible to it, so a sampler's tensors would count 0;
- a fresh worker process per measurement (its peak RSS minus its RSS before the call) would need the
  fitted model to be pickled or re-fitted there, which not every model supports; RSS also counts
  pages the C allocator keeps after a free, so a second call can show 0 and a first one the
  allocator's history;
- torch's profiler with ``profile_memory=True`` receives an event from torch's CPU allocator for every
  allocation and free in the profiled thread (the same events behind ``torch.profiler``'s memory
  view), with its address and size. Summing the allocations and the frees of those same addresses
  gives the memory the call allocated and still holds at each moment; its maximum is the peak. Frees
  of blocks allocated before the call are left out (they release memory the call did not allocate),
  so nothing allocated before the call, by the model or by earlier jobs, enters the figure.

The profiler is used. What it does not see: memory allocated outside torch's allocator (numpy
arrays, MKL or oneDNN scratch buffers, Python objects) and allocations made on other threads than
the calling one. When the profiler cannot be started (another profiler is running) or reports no
allocations on this build, :class:`MemoryUnmeasurable` (a ``MetricSkipped``) says why. The profiler
writes progress lines (kineto's ``profiler_start`` / ``profiler_stop``) to the process's standard
error; those, and only those, are filtered out of what the call writes there.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from harness import MetricSkipped


class MemoryUnmeasurable(MetricSkipped):
    """Peak memory cannot be measured here (the device, or the profiler); the message says why."""


PEAK_SCOPE = "peak of the memory allocated during this call and not yet freed, above what was allocated before it"


@dataclass
class MemoryPeak:
    """A peak memory figure: ``bytes`` and what it is (``source``, ``scope``).

    ``bytes``: the peak, during the call, of memory allocated in the call and not yet freed.
    ``baseline_bytes``: what was already allocated when the call began (CUDA; not part of ``bytes``).
    ``allocated_bytes`` / ``allocations``: the total the call allocated and in how many blocks (CPU).
    """

    bytes: int
    source: str
    scope: str
    baseline_bytes: Optional[int] = None
    allocated_bytes: Optional[int] = None
    allocations: Optional[int] = None


def measure_peak_memory(fn: Callable[[], object], device) -> MemoryPeak:
    """Run ``fn`` once and return the peak of the memory allocated during the call (see the module
    docstring): on CUDA from the allocator's statistics, on CPU from torch's profiler memory events.
    Raises :class:`MemoryUnmeasurable` on other devices, or when the CPU profiler is unusable."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        baseline = int(torch.cuda.memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        peak = int(torch.cuda.max_memory_allocated(device))
        return MemoryPeak(max(peak - baseline, 0), "cuda allocator (torch.cuda.max_memory_allocated minus "
                          "torch.cuda.memory_allocated before the call)", PEAK_SCOPE, baseline)
    if device.type == "cpu":
        return cpu_allocation_peak(fn)
    raise MemoryUnmeasurable(f"peak memory is measured on CPU (torch profiler memory events) and CUDA (allocator "
                             f"statistics); there is no allocator statistic for {device.type}")


# Lines the profiler itself writes to the process's stderr: kineto's log lines
# ("USDT:2026-01-01 10:00:00 123:123 SyncActivityProfilerHandler.cpp:39] profiler_start", "STAGE:...",
# "ERROR:... DeviceProperties.cpp:56] gpuGetDeviceCount failed" on a CUDA build without a GPU) and
# c10's warning about frees of memory allocated before profiling started.
_PROFILER_NOISE = re.compile(
    r"^(?:[A-Z]+:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ \w+\.cpp:\d+\]"
    r"|\[W\d{4} [^\]]*CPUAllocator\.cpp:\d+\] Memory block of unknown size)")


@contextlib.contextmanager
def _without_profiler_noise():
    """Route the process's stderr (file descriptor 2, where C++ code writes) to a temporary file for
    the duration, then write back every line that is not one of :data:`_PROFILER_NOISE`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: leave it alone
        yield
        return
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", errors="replace")
                kept = "".join(line for line in text.splitlines(keepends=True) if not _PROFILER_NOISE.match(line))
                if kept:
                    os.write(2, kept.encode("utf-8"))
    finally:
        os.close(saved)


def _allocation_events(result) -> list:
    """(nanoseconds, pointer, bytes) of every CPU allocation (+) and free (-) in a profiler result, in order."""
    try:
        from torch._C._profiler import _EventType

        allocation, found = _EventType.Allocation, []
        stack = [iter(result.experimental_event_tree())]
        while stack:  # depth first, in the order the tree lists events
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
            elif node.tag == allocation:
                e = node.extra_fields
                if e.device.type == "cpu":
                    found.append((node.start_time_ns, len(found), e.ptr, e.alloc_size))
            else:
                children = node.children
                if children:
                    stack.append(iter(children))
    except (ImportError, AttributeError) as exc:  # the event tree is an experimental torch API
        raise MemoryUnmeasurable(f"torch {torch.__version__}'s profiler gives no allocation events to read "
                                 f"({type(exc).__name__}: {exc})") from exc
    found.sort()  # by time; simultaneous events keep the tree's order
    return [(ns, int(ptr), int(nbytes)) for ns, _, ptr, nbytes in found]


def _cpu_memory_events(fn: Callable[[], object]) -> list:
    """(nanoseconds, pointer, bytes) of every CPU allocation (+) and free (-) torch's profiler saw
    during ``fn()``, in order."""
    from torch.autograd.profiler import profile

    if torch.autograd._profiler_enabled():  # a second session would end the running one's without a word
        raise MemoryUnmeasurable("another torch profiler is running in this process, and the allocation events "
                                 "peak memory needs come from a profiler session of its own")
    with _without_profiler_noise():
        profiler = profile(use_cpu=True, profile_memory=True)
        try:
            profiler.__enter__()
        except RuntimeError as exc:
            raise MemoryUnmeasurable(f"the torch profiler could not be started to record allocations ({exc})") from exc
        try:
            fn()
        finally:
            profiler.__exit__(None, None, None)
    return _allocation_events(profiler.kineto_results)


def allocation_peak(events) -> tuple:
    """(peak, total allocated, allocations) from (nanoseconds, pointer, bytes) events in order: the
    running sum of the blocks allocated among these events and not yet freed. A free of a block
    allocated before them (the allocator may know its size from an earlier profiling session) is
    not counted: it released memory the call did not allocate."""
    live: dict = {}
    held = peak = allocated = count = 0
    for _, ptr, nbytes in events:
        if nbytes > 0:
            held += nbytes - live.get(ptr, 0)  # (a pointer reported twice without a free in between: once)
            live[ptr] = nbytes
            allocated += nbytes
            count += 1
            peak = max(peak, held)
        elif ptr in live:
            held -= live.pop(ptr)
    return peak, allocated, count


PROBE_ELEMENTS = 1 << 16  # float32: 256 KiB


_CPU_EVENTS_CHECKED: list = []  # [None or the reason], once the probe has run in this process


def _cpu_events_missing() -> Optional[str]:
    """None when the profiler reports CPU allocations on this build, else the reason (probed once:
    a known allocation must show up among the events)."""
    if not _CPU_EVENTS_CHECKED:
        events = _cpu_memory_events(lambda: torch.empty(PROBE_ELEMENTS, dtype=torch.float32).fill_(1.0))
        seen = any(nbytes == 4 * PROBE_ELEMENTS for _, _, nbytes in events)
        _CPU_EVENTS_CHECKED.append(None if seen else (
            f"torch {torch.__version__}'s profiler reported no CPU allocation events (profile_memory=True), so the "
            "memory a call allocates cannot be measured on this build"))
    return _CPU_EVENTS_CHECKED[0]


def cpu_allocation_peak(fn: Callable[[], object]) -> MemoryPeak:
    """Run ``fn`` once under torch's profiler and return the peak of the running sum of its CPU
    allocation events: the most memory the call had allocated and not yet freed at any moment."""
    missing = _cpu_events_missing()
    if missing:
        raise MemoryUnmeasurable(missing)
    peak, allocated, count = allocation_peak(_cpu_memory_events(fn))
    return MemoryPeak(peak, "torch profiler memory events (CPU allocator, profile_memory=True)", PEAK_SCOPE,
                      allocated_bytes=allocated, allocations=count)

