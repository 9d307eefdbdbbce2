"""The example plugin against the harness's conformance kit (harness.testing).

Run from this directory with ``python -m pytest`` (installed or not), or from anywhere once the plugin
is installed. The ``harness_check`` fixture comes with harness (its pytest plugin).
"""

from harness_example import laplace

from harness.testing import conformance_suite

# When the plugin is installed its entry point has registered it already; otherwise it is added here.
PLUGIN = {"laplace": laplace}


def test_laplace_passes_the_conformance_checks(harness_check):
    report = harness_check("laplace", plugins=PLUGIN)  # fails with every failing check and why
    assert report.find("model:laplace", "normalised", "continuous").passed


# The same checks, one test each (`pytest -k normalised` runs one).
test_each_check = conformance_suite("laplace", plugins=PLUGIN)
