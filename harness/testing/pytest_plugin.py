"""The kit's pytest plugin, registered under the ``pytest11`` entry point: installing harness makes
the ``harness_check`` fixture available to every test suite (or enable it by hand with
``pytest_plugins = ["harness.testing.pytest_plugin"]``).

::

    def test_my_plugin_conforms(harness_check):
        report = harness_check("laplace", overrides=["laplace.min_scale=1e-3"])

``harness_check(*names, **options)`` runs :func:`harness.testing.check` and fails the test with every
failing check, each named with what it found; it returns the :class:`harness.testing.Report`
otherwise. pytest imports this module in every session where harness is installed, so it imports
neither torch nor the kit (``harness`` and ``harness.testing`` import their names on first use); the
kit is imported when a test uses the fixture.
"""

import pytest


@pytest.fixture
def harness_check():
    def run(*names, **options):
        from harness.testing import check

        report = check(list(names), **options)
        if not report.ok:
            pytest.fail(f"{len(report.failures)} conformance check(s) failed ({report.summary()}):\n"
                        + report.failure_text(), pytrace=False)
        return report

    return run
