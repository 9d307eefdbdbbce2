"""Fake models that take their worker process down, for the isolation tests (load with tests.fake_plugins.fakes,
whose ``tiny`` dataset they use):

- ``segv``: fit kills its own process with SIGSEGV, as a crash in native code would;
- ``deadlock``: fit locks a pthread mutex it already holds, a hang in native code that no signal handler
  interrupts (the job runner's SIGALRM included): only killing the process ends it;
- ``flaky``: fit segfaults the first time (it leaves the file named by HARNESS_TEST_CRASH_MARKER behind)
  and succeeds afterwards, for ``--retries``;
- ``raiser``: fit appends "raiser fit" to the file named by HARNESS_TEST_FIT_LOG, then raises (a job that
  raised is never retried).
"""

from __future__ import annotations

import ctypes
import os
import signal

from harness import Capability, DataKind, LikelihoodKind, ModelSpec, hookimpl
from tests.fake_plugins.fakes import StandardNormal


def _segfault() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
    except (ImportError, ValueError, OSError):
        pass
    os.kill(os.getpid(), signal.SIGSEGV)


class Segfault(StandardNormal):
    def fit(self, train, val, ctx):
        _segfault()


class Deadlock(StandardNormal):
    def fit(self, train, val, ctx):
        libc = ctypes.CDLL(None)
        mutex = ctypes.create_string_buffer(128)  # larger than any platform's pthread_mutex_t
        libc.pthread_mutex_init(mutex, None)
        libc.pthread_mutex_lock(mutex)
        libc.pthread_mutex_lock(mutex)  # never returns


class Flaky(StandardNormal):
    def fit(self, train, val, ctx):
        marker = os.environ["HARNESS_TEST_CRASH_MARKER"]
        if not os.path.exists(marker):
            open(marker, "w").close()
            _segfault()
        super().fit(train, val, ctx)


class Raiser(StandardNormal):
    def fit(self, train, val, ctx):
        with open(os.environ["HARNESS_TEST_FIT_LOG"], "a") as f:
            f.write("raiser fit\n")
        raise RuntimeError("deliberate failure after logging")


def _spec(name, cls):
    return ModelSpec(name=name, family="fake", factory=cls, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT, default_datasets=["tiny"])


@hookimpl
def harness_register_models(register):
    register(_spec("segv", Segfault))
    register(_spec("deadlock", Deadlock))
    register(_spec("flaky", Flaky))
    register(_spec("raiser", Raiser))
