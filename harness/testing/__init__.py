"""harness.testing: conformance checks any plugin can run on its own models, datasets and metrics.

Run them from Python::

    from harness.testing import check
    report = check(["laplace"])          # a model, dataset, metric, plugin or family name
    assert report.ok, report.failure_text()

from pytest (this module's pytest plugin is registered under the ``pytest11`` entry point, so the
``harness_check`` fixture is there once harness is installed)::

    def test_my_plugin_conforms(harness_check):
        harness_check("laplace")         # fails the test with every failing check and why

    # or one test per check, each named by its check:
    from harness.testing import conformance_suite
    test_conformance = conformance_suite("laplace")

or from the command line: ``python -m harness check laplace [--format json]``.

What is checked: :mod:`harness.testing.models`, :mod:`harness.testing.datasets`,
:mod:`harness.testing.metrics`; on which data: :mod:`harness.testing.tiny`. The names below are
imported on first use, so the pytest plugin loads without torch until a test asks for the kit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports each on first use
    from harness.testing.results import FAILED, PASSED, SKIPPED, CheckResult, Report
    from harness.testing.session import check, select
    from harness.testing.suite import conformance_suite
    from harness.testing.tiny import TAG, tiny_dataset, tiny_datasets

# The kit's public API: the module that defines each name.
_EXPORTS = {
    **dict.fromkeys(("FAILED", "PASSED", "SKIPPED", "CheckResult", "Report"), "harness.testing.results"),
    **dict.fromkeys(("check", "select"), "harness.testing.session"),
    "conformance_suite": "harness.testing.suite",
    **dict.fromkeys(("TAG", "tiny_dataset", "tiny_datasets"), "harness.testing.tiny"),
}

__all__ = ["FAILED", "PASSED", "SKIPPED", "TAG", "CheckResult", "Report", "check", "conformance_suite", "select",
           "tiny_dataset", "tiny_datasets"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
