import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Runs made by the tests (in this process and in the CLI subprocesses they start) go one job after
# another in the test's own process unless a test names an executor: a worker pool per run would add
# its start-up to every run of the suite. Tests of the default executor unset this.
os.environ.setdefault("HARNESS_EXECUTOR", "local")


@pytest.fixture
def host():
    """The installed plugins plus the fake plugins of tests/fake_plugins/fakes.py."""
    from harness.host import get_host
    from tests.fake_plugins import fakes

    h = get_host()
    h.add_plugin(fakes, "fakes")
    return h


@pytest.fixture
def smoke():
    from harness.profiles import get_profile

    return get_profile("smoke")


def sigint_default():
    """``preexec_fn`` for a child a test interrupts with SIGINT: the signal's default disposition, as a
    terminal's Ctrl-C finds it (a shell starts background jobs with SIGINT ignored, and Python then never
    raises KeyboardInterrupt; tests run that way, such as a CI script sent to the background, would
    otherwise wait for a child that ignores the signal)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cli_env(monkeypatch):
    """Environment for CLI subprocesses that must see the fake plugins."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["HARNESS_PLUGINS"] = "tests.fake_plugins.fakes"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
