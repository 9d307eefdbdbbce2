"""A parametrised pytest suite: one test per check, named by the check's id.

::

    from harness.testing import conformance_suite
    test_conformance = conformance_suite("laplace")

collects ``test_conformance[model:laplace[continuous]::normalised]`` and its siblings. The checks of
one group (a model on one data kind, a dataset, a metric) run together the first time one of its
tests runs; each test then reports its own check: passed, failed with the message, or skipped with
the reason. ``expected_failures={check id: reason}`` marks known failures ``xfail(strict=True)``, so a
fixed one is noticed (an id that names no planned check is an error at collection).
"""

from __future__ import annotations

from typing import Mapping, Optional

from harness.testing.results import FAILED, SKIPPED, CheckResult
from harness.testing.session import Session


def conformance_suite(*names: str, expected_failures: Optional[Mapping[str, str]] = None, **options):
    """A pytest test function parametrised over every check of ``names`` (options as for
    :func:`harness.testing.check`)."""
    import pytest

    session = Session(list(names), **options)
    planned = session.planned()
    group_of = {check_id: group for group, ids in planned for check_id in ids}
    expected = dict(expected_failures or {})
    unknown = sorted(set(expected) - set(group_of))
    if unknown:
        raise ValueError(f"expected_failures names checks that are not planned: {', '.join(unknown)}")
    results: dict = {}

    def result_for(check_id: str):
        if check_id not in results:
            ran = session.run_group(group_of[check_id])
            for r in ran:
                results[r.id] = r
            failed = next((r for r in ran if r.status == FAILED), None)
            for other in (i for group, ids in planned if group == group_of[check_id] for i in ids):
                # A group that failed as a whole (a plugin raising outside any one check) fails each.
                results.setdefault(other, failed or CheckResult("", "", SKIPPED, "not run"))
        return results[check_id]

    params = [pytest.param(i, id=i, marks=[pytest.mark.xfail(reason=expected[i], strict=True)] if i in expected
                           else []) for _, ids in planned for i in ids]

    @pytest.mark.parametrize("check_id", params)
    def test_conformance(check_id):
        result = result_for(check_id)
        if result.status == SKIPPED:
            pytest.skip(result.message)
        if result.status == FAILED:
            pytest.fail(result.describe(), pytrace=False)

    return test_conformance
