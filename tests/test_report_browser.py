"""report.html opened in headless Chromium, as a reader opens it from disk: no console errors, every
image decodes (naturalWidth > 0), one section per dataset, nothing fetched, a screenshot that is not
blank. Driven through the DevTools protocol over a pipe (tests/report_browser.py).

Chromium comes from Debian's package (`apt-get install chromium`; .ci/run installs it). Without a
browser the test is skipped saying so, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import os

import pytest

from harness.host import get_host
from harness.report import write_reports
from harness.report.data import DatasetSource
from harness.store import Store
from tests import report_fixtures as fx
from tests.report_browser import blank_fraction, find_browser, inspect

BROWSER = find_browser()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser():
    if BROWSER is None:
        message = ("no Chromium found (looked for chromium, chromium-browser, google-chrome; or set HARNESS_CHROMIUM); "
                   "install it with `apt-get install chromium`")
        if IN_CI:
            pytest.fail("CI=true and " + message)
        pytest.skip(message)
    return BROWSER


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    host = get_host()
    directory = fx.build(tmp_path_factory.mktemp("browser") / "run", host, seeds=(0, 1))
    store = Store(directory, read_only=True)
    paths = write_reports(store.results(), directory, outputs=store.outputs(), runs=store.runs(),
                          source=DatasetSource(host))
    store.close()
    return paths["html"]


def test_report_html_in_headless_chromium(browser, report, tmp_path):
    seen = inspect(report, browser)
    assert seen.errors == []
    facts = seen.facts
    assert facts["sections"] == [fx.TOY, fx.IMAGES]
    assert facts["external"] == []
    images = facts["images"]
    assert len(images) >= 10
    bad = [i["alt"] for i in images if not (i["decoded"] and i["complete"] and i["naturalWidth"] > 0
                                             and i["naturalHeight"] > 0 and i["inline"])]
    assert bad == []
    alts = {i["alt"] for i in images}
    assert {f"{fx.TOY}: likelihood vs entropy", f"{fx.TOY}: quality vs sampling speed",
            f"{fx.IMAGES}: spread over seeds"} <= alts
    assert facts["bestCells"] > 0
    (tmp_path / "report.png").write_bytes(seen.screenshot)
    assert seen.screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    assert blank_fraction(seen.screenshot) < 0.95  # a blank page is one colour


def test_a_page_with_a_broken_image_and_a_script_error_is_caught(browser, tmp_path):
    """The checks above can fail: a page with an undecodable image and a throwing script is reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><section class='dataset' data-dataset='x'>"
                    "<img alt='bad' src='data:image/png;base64,AAAA'></section>"
                    "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    seen = inspect(page, browser, full_page=False)
    assert any("boom" in e for e in seen.errors) and any("undefinedFunction" in e for e in seen.errors)
    assert [i["decoded"] for i in seen.facts["images"]] == [False]
    assert blank_fraction(seen.screenshot) > 0.95
