"""A job's time limit inside its own process: SIGALRM raises :class:`JobTimeout` in the main thread.

Executors that run a job in a worker process also watch it from outside (a hang in native code does
not see the signal); this is the limit that works wherever the job runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Optional


class JobTimeout(Exception):
    """The job passed its time limit."""


@contextlib.contextmanager
def time_limit(seconds: Optional[float]):
    """Raise :class:`JobTimeout` in the main thread after ``seconds``; no limit for None or 0, on a platform
    without SIGALRM, or outside the main thread."""
    usable = (seconds and seconds > 0 and hasattr(signal, "SIGALRM")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise JobTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
