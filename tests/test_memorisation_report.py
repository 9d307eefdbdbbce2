"""The copy metrics where people read them: the nearest-training-examples panels of the report, the
worst cell highlighted in the tables, and the comparisons' one-sided judgement about the level held-out
data scores. The copiers of tests/fake_plugins/copiers.py run through the real runner at smoke."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness import Highlight, Judge, Output, Role, Tolerance
from harness.comparison import Entry, Side, Verdict, compare_sides, load_results, summarise
from harness.comparison.machines import MachineSide, SpeedMode, SpeedPlan
from harness.comparison.reference_level import NO_LEVEL, judge, reference_levels
from harness.contracts import REFERENCE_LEVEL, NeighbourQuery
from harness.profiles import get_profile
from harness.report.tables import build_tables
from tests.fake_plugins import copiers

COPIERS = ("copy-train", "copy-train-noisy", "copy-test")
N = 500  # the sample count at smoke
COPY_IDS = (f"copying_ct@{N}", f"authenticity@{N}", f"copy_rate@{N}")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """copy-train, copy-train-noisy and copy-test on digits and 8gaussians at smoke, copy metrics and FID."""
    from harness.host import get_host
    from harness.runner import Runner

    host = get_host()
    host.add_plugin(copiers, "copiers")
    out = tmp_path_factory.mktemp("copiers")
    runner = Runner(host, get_profile("smoke"), out, seeds=[0], metrics=["copying", "fid"])
    store, summary = runner.run(runner.plan(list(COPIERS), ["digits", "8gaussians"], False))
    store.close()
    assert summary["ok"] == 6 and summary["failed"] == 0
    return out, host


@pytest.fixture(scope="module")
def report(run_dir):
    from harness.report.data import DatasetSource
    from harness.report.summarised import SummarisedRun

    out, host = run_dir
    return SummarisedRun.read(out, source=DatasetSource(host))


def _section(report, dataset):
    return next(s for s in report.sections if s.dataset == dataset)


# ----------------------------------------------------------------------------- the panels


def test_the_panels_show_the_copiers_first_and_all_their_samples_within_the_threshold(report):
    digits = _section(report, "digits")
    titles = [p.title for p in digits.neighbours]
    assert digits.neighbours[0].reference and titles[0].startswith("test data")
    assert set(titles[1:3]) == {"copy-train", "copy-train-noisy"} and titles[3] == "copy-test"
    assert all(p.image is not None and p.image.mime == "image/png" for p in digits.neighbours)
    captions = {p.title: p.caption for p in digits.neighbours}
    assert "median distance 0," in captions["copy-train"]
    for model in ("copy-train", "copy-train-noisy"):
        assert "64 of 64 at or within the copy threshold" in captions[model]
    within = {title: int(caption.split(", ")[-1].split(" of ")[0]) for title, caption in captions.items()}
    # held-out images: about 5% of them (the threshold is the 0.05 quantile of test distances)
    assert within["copy-test"] <= 12 and within[titles[0]] <= 12
    assert "copy threshold, distance" in digits.neighbour_note and "digits-classifier features" in digits.neighbour_note
    # 2-D data get no such panel (their density cards show the samples against the data)
    toy = _section(report, "8gaussians")
    assert toy.neighbours == [] and toy.neighbour_note == ""


def test_the_neighbours_of_saved_copies_are_the_very_training_images(run_dir, report):
    """Independent of the panel's drawing: the metric's offer, asked for copy-train's saved samples, finds
    training images equal to them, pixel for pixel, at distance 0."""
    from harness.artifacts import SAMPLES_FILE
    from harness.report.panels import shown_jobs

    out, host = run_dir
    data, _ = report.source.load("digits")
    job = shown_jobs(report.results, "digits", out)["copy-train"]
    samples = torch.from_numpy(np.load(job.file(SAMPLES_FILE)))
    found = host.registry.metrics["copying"].neighbours(
        NeighbourQuery(data, samples, get_profile("smoke"), host.registry.feature_extractors))
    assert np.all(found.distance == 0)
    assert torch.equal(data.train.x[torch.as_tensor(found.index)], samples)


def test_the_html_shows_the_panels_and_marks_the_copiers_worst(report):
    from harness.report.html import html_page

    page = html_page(report)
    digits = page[page.index("id='dataset-digits'"):]
    assert "<h3>Nearest training examples</h3>" in digits
    quality = _section(report, "digits").quality
    for label in COPY_IDS:
        worst = {m for m in quality.models if quality.cell(m, label).worst}
        assert "copy-test" not in worst and worst, label
        assert not any(quality.cell(m, label).best for m in quality.models), label
    assert {m for m in quality.models if quality.cell(m, f"copying_ct@{N}").worst} == {"copy-train", "copy-train-noisy"}
    row = digits[digits.index("data-v='copy-train'"):]
    assert "class='worst'" in row[:row.index("</tr>")]
    row = digits[digits.index("data-v='copy-test'"):]
    assert "class='worst'" not in row[:row.index("</tr>")]
    assert "Worst in column" in page


def test_the_markdown_page_marks_worst_cells(report):
    from harness.report.markdown import markdown_page

    page = markdown_page(report)
    line = next(row for row in page.splitlines() if row.startswith("| copy-test") and "⚠" not in row)
    assert line
    assert any(row.startswith("| copy-train ") and row.count("⚠") == 3 for row in page.splitlines())


# ----------------------------------------------------------------------------- the tables


def _summary(values: dict, label: str = "x") -> pd.DataFrame:
    return pd.DataFrame([dict(dataset="d", model=m, family="", metric="x", label=label, unit="", estimator="statistic",
                              mean=v, stderr=0.01, seeds=1, higher_is_better=True, seed_list=[0],
                              seed_values=[(0, v)]) for m, v in values.items()])


def test_highlight_worst_marks_the_lowest_of_a_higher_is_better_column_and_ties_with_it():
    worst = Output("x", higher_is_better=True, estimator="statistic", role=Role.MEMORISATION)
    assert worst.highlight is Highlight.WORST
    table = build_tables(_summary({"a": -8.0, "b": -7.995, "c": 0.1}), {"x": worst})["d"]
    assert [m for m in table.models if table.cell(m, "x").worst] == ["a", "b"]
    assert not any(table.cell(m, "x").best for m in table.models)
    best = Output("x", higher_is_better=True, estimator="statistic", role=Role.MEMORISATION, highlight=Highlight.BEST)
    table = build_tables(_summary({"a": -8.0, "b": -7.995, "c": 0.1}), {"x": best})["d"]
    assert [m for m in table.models if table.cell(m, "x").best] == ["c"]
    assert not any(table.cell(m, "x").worst for m in table.models)


def test_a_stored_declaration_without_highlight_or_judge_takes_the_installed_ones():
    known = Output("x", "z", True, estimator="statistic", role=Role.MEMORISATION, judge=Judge.BEYOND_REFERENCE,
                   highlight=Highlight.WORST)
    old = {k: v for k, v in known.as_dict().items() if k not in ("highlight", "judge")}
    assert Output.from_dict(old, known) == known
    bare = Output.from_dict({**old, "role": "sample_quality"})
    assert bare.judge is Judge.DIRECTION and bare.highlight is Highlight.BEST
    with pytest.raises(ValueError, match="quality outputs"):
        Output("t", "s", kind="speed", judge=Judge.BEYOND_REFERENCE)


# ----------------------------------------------------------------------------- the comparisons' judgement

CT = Output("ct", "z", True, estimator="statistic", role=Role.MEMORISATION, judge=Judge.BEYOND_REFERENCE,
            tolerance=Tolerance(relative=0.25, absolute=1.0))
RATE = Output("rate", "fraction", False, estimator="statistic", role=Role.MEMORISATION,
              judge=Judge.BEYOND_REFERENCE, tolerance=Tolerance(absolute=0.05))


def _entry(metric: Output, mean: float, stderr: float, level=None, model="m") -> Entry:
    return Entry(model, "d", metric.name, metric.name, "", metric.unit, "statistic", metric.higher_is_better, mean,
                 stderr, 1, [0], level, protocol={})  # a recorded (empty) protocol: no note about it


@pytest.mark.parametrize("out, ref, cur, level, verdict, why", [
    # a better fit: C_T falls from far above the level towards it: no regression (by direction: worse)
    (CT, 8.0, 0.5, 0.0, Verdict.UNCHANGED, "not past the level"),
    (CT, 8.0, -0.9, 0.0, Verdict.UNCHANGED, "not past the level"),  # within the floor (1.0) of the level
    (CT, 8.0, -5.0, 0.0, Verdict.WORSE, "past the level"),  # now copies
    (CT, -8.0, 0.5, 0.0, Verdict.BETTER, "was past the level"),  # copied, copies no more
    (CT, 3.0, 9.0, 0.0, Verdict.UNCHANGED, "from a value not past"),  # farther from the data: not this row's business
    (RATE, 0.0, 0.09, 0.05, Verdict.UNCHANGED, "not past the level"),  # 0.09 <= 0.05 + 0.05
    (RATE, 0.0, 0.5, 0.05, Verdict.WORSE, "past the level"),
    (RATE, 1.0, 0.05, 0.05, Verdict.BETTER, "was past the level"),
])
def test_rows_judged_beyond_the_reference(out, ref, cur, level, verdict, why):
    plain = dataclasses.replace(out, judge=Judge.DIRECTION)
    by_direction, _ = judge(_entry(out, ref, 0.01), _entry(out, cur, 0.01), plain, out.higher_is_better,
                            out.tolerance, 0.01)
    assert by_direction.verdict is not Verdict.UNCHANGED  # the plain rule sees a move beyond floor and noise
    decision, note = judge(_entry(out, ref, 0.01), _entry(out, cur, 0.01, level), out, out.higher_is_better,
                           out.tolerance, 0.01)
    assert decision.verdict is verdict and why in note
    assert decision.delta == pytest.approx(cur - ref)


def test_noise_still_excuses_a_move_past_the_level():
    decision, _ = judge(_entry(CT, 0.0, 3.0), _entry(CT, -5.0, 3.0, 0.0), CT, True, CT.tolerance, 0.01)
    assert decision.verdict is Verdict.UNCHANGED


def test_the_engine_reads_the_declaration_and_a_missing_level_is_not_compared():
    plan = SpeedPlan(SpeedMode.NOT_COMPARED, MachineSide(None))
    ref = Side({("m", "d", "ct"): _entry(CT, 8.0, 0.01)}, {"ct": CT})
    cur = Side({("m", "d", "ct"): _entry(CT, 0.5, 0.01, 0.0)}, {"ct": CT})
    [row] = compare_sides(ref, cur, plan, 0.01)
    assert row.verdict is Verdict.UNCHANGED and "not past the level" in row.note
    [row] = compare_sides(ref, Side({("m", "d", "ct"): _entry(CT, 0.5, 0.01)}, {"ct": CT}), plan, 0.01)
    assert row.verdict is Verdict.NOT_COMPARED and row.note == NO_LEVEL
    plain = dataclasses.replace(CT, judge=Judge.DIRECTION)
    [row] = compare_sides(Side(ref.entries, {"ct": plain}), Side(cur.entries, {"ct": plain}), plan, 0.01)
    assert row.verdict is Verdict.WORSE


def test_levels_are_read_from_the_store_and_a_copier_against_new_data_is_worse(run_dir):
    """Entries of a real results directory carry the level its measurements recorded; set copy-train
    against copy-test (as if one model had turned into a copier), every copy row is worse, and back,
    better; FID is judged by its direction."""
    out, _ = run_dir
    results = load_results(out)
    details = {(r.model, r.dataset, r.id): json.loads(r.details)[REFERENCE_LEVEL]
               for r in results.rows.itertuples() if r.id in COPY_IDS}
    entries = {e.key: e for e in summarise(results)}
    assert {k: entries[k].reference_level for k in details} == pytest.approx(details)
    assert reference_levels(results.rows.drop(columns="details")) == {}
    for dataset in ("digits", "8gaussians"):
        new_data = _as_model(entries, "copy-test", dataset)
        copier = _as_model(entries, "copy-train", dataset)
        plan = SpeedPlan(SpeedMode.NOT_COMPARED, MachineSide(None))
        rows = {r.id: r for r in compare_sides(Side(new_data, results.outputs), Side(copier, results.outputs), plan,
                                              0.01)}
        assert all(rows[i].verdict is Verdict.WORSE for i in COPY_IDS), {i: rows[i].note for i in COPY_IDS}
        back = {r.id: r for r in compare_sides(Side(copier, results.outputs), Side(new_data, results.outputs), plan,
                                              0.01)}
        assert all(back[i].verdict is Verdict.BETTER for i in COPY_IDS), {i: back[i].note for i in COPY_IDS}
        assert back[f"fid@{N}"].note == ""


def _as_model(entries: dict, model: str, dataset: str) -> dict:
    return {("m", dataset, e.id): dataclasses.replace(e, model="m") for (m, d, _), e in entries.items()
            if m == model and d == dataset}


def test_only_the_copy_metric_offers_nearest_training_examples(run_dir):
    _, host = run_dir
    assert [name for name, spec in host.registry.metrics.items() if spec.neighbours is not None] == ["copying"]
