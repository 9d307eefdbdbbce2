"""report.html from a results directory with saved artifacts (tests/report_fixtures.py): one
self-contained page, a section per dataset, every image inline and decodable, sample grids that are
the saved samples and the real test images, the true density on the dataset's grid, the charts, best
cells, integers, the environment and every failed or skipped job. Pixels are checked against arrays
built here from the dataset and the artifact files, not against the report's own helpers."""

from __future__ import annotations

import base64
import io
import re
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from harness.artifacts import density_grid, find_artifact
from harness.cli import main
from harness.contracts import evaluation_indices
from harness.host import get_host
from harness.profiles import get_profile
from harness.report import write_reports
from harness.report.data import DatasetSource
from harness.report.images import tile, to_unit
from harness.report.panels import DENSITY_HEADROOM, DENSITY_RANGE, _truth, colour_scale
from harness.store import Store
from tests import report_fixtures as fx


class Page(HTMLParser):
    """The parts of report.html the tests look at: sections, images, figures, cells."""

    def __init__(self, text):
        super().__init__()
        self.sections, self.images, self.figures, self.best, self.refs = [], [], [], [], []
        self._section = None
        self._figure = None
        self._row = None
        self._td_best = False
        self._in_caption = False
        self._text: list = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a:
                self.refs.append(a[key])
        if tag == "section" and "dataset" in (a.get("class") or "").split():
            self._section = a["data-dataset"]
            self.sections.append(self._section)
        if tag == "figure":
            self._figure = {"section": self._section, "class": a.get("class", ""), "text": "", "img": None,
                            "caption": ""}
            self.figures.append(self._figure)
        if tag == "img":
            img = {"section": self._section, "src": a["src"], "alt": a.get("alt", "")}
            self.images.append(img)
            if self._figure is not None:
                self._figure["img"] = img
        if tag == "figcaption":
            self._in_caption = True
        if tag == "tr":
            self._row = []
        if tag == "td":
            self._td_best = "best" in (a.get("class") or "").split()
            self._text = []

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False
        if tag == "figure":
            self._figure = None
        if tag == "td" and self._row is not None:
            self._row.append(("".join(self._text).strip(), self._td_best))
            if self._td_best:
                self.best.append((self._section, "".join(self._text).strip()))
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._figure is not None:
            self._figure["text"] += data
            if self._in_caption:
                self._figure["caption"] += data
        self._text.append(data)


def decode(src: str):
    """A data URI -> (mime, array for PNG | ElementTree root for SVG)."""
    head, payload = src.split(",", 1)
    data = base64.b64decode(payload)
    if head.startswith("data:image/png"):
        from matplotlib.image import imread

        return "png", imread(io.BytesIO(data), format="png")
    assert head.startswith("data:image/svg+xml"), head
    return "svg", ET.fromstring(data)


@pytest.fixture(scope="module")
def host():
    return get_host()


@pytest.fixture(scope="module")
def results(tmp_path_factory, host):
    directory = fx.build(tmp_path_factory.mktemp("fixture") / "run", host)
    store = Store(directory, read_only=True)
    df, outputs, runs = store.results(), store.outputs(), store.runs()
    store.close()
    paths = write_reports(df, directory, outputs=outputs, runs=runs, source=DatasetSource(host))
    return directory, paths, Page(paths["html"].read_text())


def test_one_section_per_dataset_and_nothing_outside_the_file(results):
    _, paths, page = results
    assert page.sections == [fx.TOY, fx.IMAGES]
    assert all(ref.startswith(("data:", "#")) for ref in page.refs), [r[:40] for r in page.refs
                                                                      if not r.startswith(("data:", "#"))]
    text = paths["html"].read_text()
    outside_images = re.sub(r"data:[^'\"]+", "", text)
    assert "<link" not in text and "<script src" not in text
    assert "http://" not in outside_images and "https://" not in outside_images


def test_every_image_is_inline_and_decodes(results):
    _, _, page = results
    assert len(page.images) >= 10
    for img in page.images:
        kind, content = decode(img["src"])
        if kind == "png":
            assert content.shape[0] > 10 and content.shape[1] > 10
            assert content[..., :3].std() > 0.01  # not a flat image
        else:
            assert content.tag.endswith("svg") and len(list(content.iter())) > 20


def test_sample_panels_show_every_model_and_say_when_nothing_was_saved(results):
    _, _, page = results
    toy = {f["caption"].split(":")[0].strip(): f for f in page.figures
           if f["section"] == fx.TOY and "chart" not in f["class"]}
    assert set(toy) == {"test data and true density", "alpha", "beta", "gamma"}
    assert toy["alpha"]["img"] is not None and toy["beta"]["img"] is not None
    assert toy["gamma"]["img"] is None and "no samples saved for this job" in toy["gamma"]["text"]
    assert "missing" in toy["gamma"]["class"] and "reference" in toy["test data and true density"]["class"]
    images = {f["caption"].split(":")[0].strip(): f for f in page.figures
              if f["section"] == fx.IMAGES and "chart" not in f["class"]}
    assert set(images) == {"test data", "alpha", "beta"}
    assert images["beta"]["img"] is None and "no samples saved for this job" in images["beta"]["text"]
    assert "conditioned on labels 0..9" in images["alpha"]["text"]


def test_the_sample_grid_is_the_saved_samples_and_the_reference_grid_the_evaluation_subset(results, host):
    directory, _, page = results
    figures = {f["caption"].split(":")[0].strip(): f for f in page.figures if f["section"] == fx.IMAGES}
    # The saved samples of the lowest seed, tiled 8x8 with a 1-pixel grey border, levels / 16.
    folder = find_artifact(directory / "artifacts", fx.key_of("alpha", fx.IMAGES, 0, "fixture-run"))
    assert folder.name.startswith(f"alpha-{fx.IMAGES}-s0-")
    saved = np.load(folder / "samples.npy")
    _, got = decode(figures["alpha"]["img"]["src"])
    scale = got.shape[1] // 73  # 8 tiles of 8 pixels and 9 borders
    for k in (0, 9, 63):
        r, c = divmod(k, 8)
        y, x = (1 + r * 9) * scale, (1 + c * 9) * scale
        block = got[y:y + 8 * scale:scale, x:x + 8 * scale:scale, 0]
        assert np.allclose(block, saved[k, 0] / 16, atol=1 / 255 + 1e-6)
    # The real images: the first 64 of the smoke profile's evaluation subset of the test split.
    data = DatasetSource(host).load(fx.IMAGES)[0]
    idx = evaluation_indices(len(data.test), get_profile("smoke").eval_examples)[:64]
    _, ref = decode(figures["test data"]["img"]["src"])
    for k in (0, 17, 63):
        r, c = divmod(k, 8)
        y, x = (1 + r * 9) * scale, (1 + c * 9) * scale
        block = ref[y:y + 8 * scale:scale, x:x + 8 * scale:scale, 0]
        assert np.allclose(block, data.test.x[idx[k], 0].numpy() / 16, atol=1 / 255 + 1e-6)


def test_tile_places_image_k_at_row_k_div_8_column_k_mod_8():
    rng = np.random.default_rng(0)
    imgs = rng.random((20, 3, 5, 4))
    grid = tile(imgs, columns=8, pad=1, target_width=1)
    assert grid.shape == (3 * 6 + 1, 8 * 5 + 1, 3)
    for k in range(20):
        r, c = divmod(k, 8)
        assert np.array_equal(grid[1 + r * 6:1 + r * 6 + 5, 1 + c * 5:1 + c * 5 + 4], np.moveaxis(imgs[k], 0, -1))
    assert np.all(grid[0] == 0.5) and np.all(grid[-5:, 1 + 4 * 5:] == 0.5)  # borders and empty tiles grey
    assert to_unit(np.array([0.0, 8.0, 16.0]), 17).tolist() == [0.0, 0.5, 1.0]
    assert to_unit(np.array([0.0, 1.0]), 2).tolist() == [0.0, 1.0]


def test_the_true_density_is_evaluated_on_the_datasets_grid(host):
    spec = host.dataset(fx.TOY)
    data = DatasetSource(host).load(fx.TOY)[0]
    (x, y, ld), note = _truth(spec, data)
    gx, gy = density_grid(data)
    assert note == "" and np.allclose(x, gx.numpy()) and np.allclose(y, gy.numpy()) and ld.shape == (len(y), len(x))
    for i, j in [(0, 0), (5, 40), (63, 17), (32, 32)]:  # row i is y[i], column j is x[j]
        point = torch.tensor([[x[j], y[i]]], dtype=torch.float32)
        assert ld[i, j] == pytest.approx(float(spec.log_density(point)[0]), rel=1e-5, abs=1e-5)


def test_one_colour_scale_for_the_truth_and_every_model():
    truth = np.array([[-5.0, -1.0], [-50.0, -np.inf]])
    assert colour_scale(truth, [np.array([[-2.0, -0.5]])]) == (-0.5 - DENSITY_RANGE, -0.5)
    spiky = np.array([[10.0, -3.0]])  # a model far above the truth's peak is clipped at the headroom
    assert colour_scale(truth, [spiky]) == (-1.0 + DENSITY_HEADROOM - DENSITY_RANGE, -1.0 + DENSITY_HEADROOM)
    assert colour_scale(None, [np.array([[1.0, 2.0]])]) == (2.0 - DENSITY_RANGE, 2.0)


def test_charts_for_each_dataset(results):
    _, _, page = results
    alts = {(i["section"], i["alt"]) for i in page.images}
    for dataset in (fx.TOY, fx.IMAGES):
        for chart in ("likelihood vs entropy", "quality vs sampling speed", "spread over seeds"):
            assert (dataset, f"{dataset}: {chart}") in alts


def test_the_likelihood_chart_marks_kinds_and_draws_the_entropy(results, host):
    _, _, page = results
    chart = next(i for i in page.images if i["alt"] == f"{fx.TOY}: likelihood vs entropy")
    svg = base64.b64decode(chart["src"].split(",", 1)[1]).decode()
    assert "exact" in svg and "bound (true NLL at or below)" in svg and "estimate (stochastic)" in svg
    assert f"true entropy {host.dataset(fx.TOY).entropy:.3f} nats" in svg
    assert "gamma" in svg and "(parzen_nll)" in svg  # a sampler charted with its Parzen estimate, labelled


def test_tables_mark_the_best_print_integers_and_carry_units(results):
    directory, paths, page = results
    html = paths["html"].read_text()
    toy_best = [t for s, t in page.best if s == fx.TOY]
    assert any(t.startswith("0.0495") for t in toy_best)  # alpha's fid@500 (lowest; gamma's 0.0595 is not tied)
    assert not any(t.startswith("0.0595") for t in toy_best)
    assert ">8</td>" in html and ">8.000<" not in html  # modes_covered is an integer
    for header in ("[nats]", "[fraction]", "[samples/s]", "[modes]"):
        assert header in html
    md = paths["markdown"].read_text()
    assert "**0.0495" in md and "modes_covered [modes] ↑" in md


def test_environment_and_failures_are_listed(results):
    _, paths, _ = results
    html = paths["html"].read_text()
    env = html[html.index("id='environment'"):]
    for text in ("fixture-run", "smoke", "0, 1, 2", torch.__version__, "threads", "wall time"):
        assert text in env
    problems = html[html.index("id='problems'"):html.index("id='environment'")]
    assert "deliberate failure in fit" in problems and "broken" in problems
    assert "gamma handles continuous data; digits is discrete" in problems
    assert "lacks conditional" in problems  # metrics that did not apply, folded


def test_without_artifacts_the_report_says_so_and_still_writes(tmp_path, host, capsys):
    directory = fx.build(tmp_path / "bare", host, seeds=(0,), artifacts=False)
    assert main(["report", str(directory)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines() if str(directory) not in line) <= 100  # paths aside
    assert f"{directory / 'report.html'}" in out
    page = Page((directory / "report.html").read_text())
    models = [f for f in page.figures if "reference" not in f["class"] and "chart" not in f["class"]]
    assert models and all("no samples saved for this job" in f["text"] for f in models)
    assert page.sections == [fx.TOY, fx.IMAGES]


def test_report_out_writes_elsewhere_with_the_samples_inline(results, tmp_path, capsys):
    directory, _, _ = results
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy, ignore=shutil.ignore_patterns("report.*", "results.csv", "results.json"))
    assert main(["report", str(copy), "--out", str(tmp_path / "elsewhere"), "--format", "json"]) == 0
    assert not (copy / "report.html").exists()
    page = Page((tmp_path / "elsewhere" / "report.html").read_text())
    assert len([i for i in page.images if "alpha seed 0" in i["alt"]]) == 2  # toy card and digits grid


def test_a_figure_that_cannot_be_drawn_leaves_a_note_not_a_failed_report(results, host, monkeypatch, tmp_path):
    from harness.report import charts

    def broken(*args, **kwargs):
        raise ValueError("no room on the canvas")

    monkeypatch.setattr(charts, "likelihood_chart", broken)
    monkeypatch.setattr(charts, "density_card", broken)
    directory, _, _ = results
    store = Store(directory, read_only=True)
    paths = write_reports(store.results(), tmp_path, outputs=store.outputs(), source=DatasetSource(host),
                          directory=directory)
    store.close()
    html = paths["html"].read_text()
    assert "the charts could not be drawn: ValueError: no room on the canvas" in html
    assert "the samples could not be drawn: ValueError: no room on the canvas" in html
    assert Page(html).sections == [fx.TOY, fx.IMAGES] and "<table class='results sortable'>" in html
