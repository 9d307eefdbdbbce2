"""A model whose fit waits until the file named by HARNESS_TEST_GATE exists (two minutes at most): a
test decides when its job ends, e.g. after stopping a tracking server mid-run."""

from __future__ import annotations

import os
import time

from harness import hookimpl
from tests.fake_plugins import fakes


class Gated(fakes.StandardNormal):
    def fit(self, train, val, ctx):
        deadline = time.monotonic() + 120
        while not os.path.exists(os.environ["HARNESS_TEST_GATE"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        super().fit(train, val, ctx)


@hookimpl
def harness_register_models(register):
    register(fakes._spec("gated", Gated))
