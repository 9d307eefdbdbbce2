"""Report tables: aggregation over seeds (mean, standard error across seeds), declarations read from
the store (column order, kind, integers, units), the best per column (direction, ties within standard
errors, likelihood kinds apart), the Pareto front against brute force, the roles charts pick from
declarations, and the terminal summary within 100 columns."""

import itertools
import math
import random

import numpy as np
import pandas as pd
import pytest

from harness.contracts import SPEED, Output, Role
from harness.formatting import error, number, value_with_error
from harness.report import comparison_tables, summarise
from harness.report import roles
from harness.report.pareto import pareto_front
from harness.report.tables import Cell, Column, Table, build_tables, mark_best
from harness.report.summarised import SummarisedRun
from harness.report.terminal import KEY, WIDTH, terminal_summary


def rows(values, metric="nll", estimator="exact", stderr=0.5, unit="nats", model="m", hib=False, ident=None,
         dataset="d"):
    return [dict(run_id="r", model=model, family="f", dataset=dataset, seed=i, profile="smoke", metric=metric,
                 id=ident or metric, value=v, stderr=stderr, unit=unit, estimator=estimator, n=10, status="ok",
                 reason="", higher_is_better=hib) for i, v in enumerate(values)]


def test_several_seeds_give_the_mean_and_the_standard_error_across_seeds():
    values = [1.0, 2.0, 4.0]
    s = summarise(pd.DataFrame(rows(values))).iloc[0]
    se = pd.Series(values).std(ddof=1) / math.sqrt(3)
    assert s["mean"] == pytest.approx(7 / 3)
    assert s["stderr"] == pytest.approx(se)  # not the rows' own 0.5
    assert s["seeds"] == 3 and s["seed_list"] == [0, 1, 2]
    assert s["seed_values"] == [(0, 1.0), (1, 2.0), (2, 4.0)]
    cell = comparison_tables(pd.DataFrame(rows(values)))["d"].loc["m", "nll [nats]"]
    assert cell == f"2.333 ± {se:.2f} (x)"  # the error to 2 significant figures


def test_one_seed_keeps_the_measurements_own_standard_error():
    s = summarise(pd.DataFrame(rows([1.0], stderr=0.25))).iloc[0]
    assert s["stderr"] == 0.25 and s["seeds"] == 1


def test_declarations_order_columns_split_quality_from_speed_and_print_integers():
    df = pd.DataFrame(rows([3.0], metric="zeta", estimator="statistic", unit="")
                      + rows([8.0], metric="alpha_count", estimator="statistic", unit="modes", hib=True)
                      + rows([100.0], metric="rate", estimator="measured", unit="samples/s", hib=True))
    outputs = {"zeta": Output("zeta", order=1), "alpha_count": Output("alpha_count", "modes", True, order=2,
                                                                        integer=True),
               "rate": Output("rate", "samples/s", True, kind=SPEED)}
    quality = comparison_tables(df, "quality", outputs)["d"]
    # the seeds per model first, then the declared order, not alphabetical; units
    assert list(quality.columns) == ["seeds", "zeta", "alpha_count [modes]"]
    assert quality.loc["m", "alpha_count [modes]"] == "8 ± 0.50"  # a count has no decimals
    assert list(comparison_tables(df, "speed", outputs)["d"].columns) == ["seeds", "rate [samples/s]"]


@pytest.mark.parametrize("value, integer, text", [(8.0, True, "8"), (7.666666, True, "7.7"), (8.0, False, "8.000"),
                                                  (0.0654, False, "0.0654"), (2279570.3, False, "2.280e+06")])
def test_numbers(value, integer, text):
    assert number(value, integer) == text


@pytest.mark.parametrize("se, text", [(0.0308, "0.031"), (1.855, "1.9"), (12.34, "12"), (14530.0, "15000"),
                                      (0.00123, "0.0012"), (2.0e6, "2.0e+06"), (0.5, "0.50")])
def test_standard_errors_have_two_significant_figures(se, text):
    assert error(se) == text
    assert float(text) == pytest.approx(se, rel=0.05)


def test_a_zero_or_unknown_error_is_left_out():
    assert value_with_error(3.0, 0.0) == value_with_error(3.0, math.nan) == value_with_error(3.0, None) == "3.000"
    assert value_with_error(1.428, 1.6e-16) == "1.428"  # floating-point noise of identical seeds
    assert value_with_error(1.428, 1e-6) == "1.428 ± 1.0e-06"


# ----------------------------------------------------------------------------- best in column

def table_of(cells: dict, hib=False, name="score") -> Table:
    col = Column(name, name, higher_is_better=hib)
    t = Table("d", "all", sorted(cells), [col], {(m, name): Cell(*v) for m, v in cells.items()})
    mark_best(t)
    return t


def best(t: Table) -> set:
    return {m for (m, _), c in t.cells.items() if c.best}


def test_the_best_follows_the_declared_direction():
    cells = {"a": (1.0, 0.01, "statistic"), "b": (2.0, 0.01, "statistic"), "c": (3.0, 0.01, "statistic")}
    assert best(table_of(cells, hib=False)) == {"a"}
    assert best(table_of(cells, hib=True)) == {"c"}


def test_ties_within_the_combined_standard_error_are_marked_together():
    # |2.0 - 1.9| = 0.1 <= sqrt(0.07^2 + 0.08^2) = 0.106: tied; 2.3 is not within sqrt(0.07^2 + 0.1^2) of 2.0.
    cells = {"a": (2.0, 0.07, "statistic"), "b": (1.9, 0.08, "statistic"), "c": (2.3, 0.1, "statistic")}
    assert best(table_of(cells, hib=True)) == {"c"}
    assert best(table_of(cells, hib=False)) == {"a", "b"}
    # Brute force over random columns: a cell is marked iff it is within the combined error of the best.
    rng = random.Random(0)
    for _ in range(200):
        cells = {f"m{i}": (rng.uniform(0, 1), rng.choice([0.0, rng.uniform(0, 0.2)]), "statistic")
                 for i in range(rng.randint(2, 6))}
        top = min(cells.values(), key=lambda v: v[0])
        expected = {m for m, v in cells.items() if abs(v[0] - top[0]) <= math.hypot(v[1], top[1])}
        assert best(table_of(cells)) == expected


def test_exact_values_bounds_and_estimates_are_ranked_apart_and_a_lone_kind_is_not_marked():
    cells = {"a": (3.0, 0.01, "exact"), "b": (3.5, 0.01, "exact"), "c": (2.0, 0.01, "bound"),
             "d": (4.0, 0.01, "estimate")}
    assert best(table_of(cells, name="nll")) == {"a"}  # the bound 2.0 is not ranked against exact values
    assert best(table_of({"a": (3.0, 0.01, "exact"), "c": (2.0, 0.01, "bound")}, name="nll")) == set()
    assert best(table_of({"a": (3.0, 0.01, "statistic")})) == set()  # a single model: nothing to compare


def test_unknown_direction_marks_nothing():
    assert best(table_of({"a": (1.0, 0, "statistic"), "b": (2.0, 0, "statistic")}, hib=None)) == set()


# ----------------------------------------------------------------------------- Pareto front

def skyline(points, higher):
    """Brute force: sign-flip to 'lower is better', then keep points nobody weakly beats and strictly beats."""
    flip = [tuple(-v if up else v for v, up in zip(p, higher)) for p in points]
    keep = []
    for i, p in enumerate(flip):
        if not all(math.isfinite(v) for v in p):
            continue
        beaten = any(all(q[k] <= p[k] for k in range(2)) and any(q[k] < p[k] for k in range(2))
                     for j, q in enumerate(flip) if j != i and all(math.isfinite(v) for v in q))
        if not beaten:
            keep.append(i)
    return keep


@pytest.mark.parametrize("higher", list(itertools.product([True, False], repeat=2)))
def test_pareto_front_matches_brute_force(higher):
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(1, 12))
        pts = [tuple(float(v) for v in rng.integers(0, 6, size=2)) for _ in range(n)]  # ties happen
        if rng.random() < 0.2:
            pts.append((math.nan, 1.0))
        assert pareto_front(pts, higher) == skyline(pts, higher)


def test_pareto_front_of_speed_and_quality():
    # (samples/s higher better, fid lower better): fast-and-good wins; slow-and-bad is dominated.
    pts = [(100.0, 1.0), (1000.0, 5.0), (10.0, 10.0), (1000.0, 6.0)]
    assert pareto_front(pts, (True, False)) == [0, 1]


# ----------------------------------------------------------------------------- roles from declarations

# lik_gap is in nats and lower is better, but a gap, not a likelihood: its declared role keeps it off the chart.
DECL = {"lik": Output("lik", "nats", order=10, headline=True, role=Role.LIKELIHOOD),
        "lik_gap": Output("lik_gap", "nats", order=30),
        "parzen": Output("parzen", "nats", order=50, estimator="estimate", role=Role.LIKELIHOOD),
        "stat": Output("stat", "", order=60, estimator="statistic", headline=True),
        "rate": Output("rate", "samples/s", True, kind=SPEED, order=200, headline=True),
        "lat": Output("lat", "ms", False, kind=SPEED, order=210)}


def _roles_table():
    df = pd.DataFrame(rows([3.0, 3.1], metric="lik", model="flow") + rows([0.2, 0.3], metric="lik_gap", model="flow")
                      + rows([3.5, 3.6], metric="lik", estimator="bound", model="vae")
                      + rows([4.0, 4.2], metric="parzen", estimator="estimate", model="gan")
                      + rows([1.0], metric="stat", estimator="statistic", unit="", model="gan")
                      + rows([2.0], metric="stat", estimator="statistic", unit="", model="flow")
                      + rows([100.0], metric="rate", estimator="measured", unit="samples/s", hib=True, model="gan")
                      + rows([5.0], metric="lat", estimator="measured", unit="ms", model="gan"))
    return build_tables(summarise(df), DECL, "all")["d"]


def test_the_likelihood_each_model_is_charted_with_comes_from_the_declared_order():
    t = _roles_table()
    assert roles.likelihood_column(t, "flow").label == "lik"  # not lik_gap (declared later)
    assert roles.likelihood_column(t, "vae").label == "lik"
    assert roles.likelihood_column(t, "gan").label == "parzen"  # a sampler's estimate


def test_quality_and_speed_axes_are_the_first_headline_statistic_and_speed_figure():
    t = _roles_table()
    assert roles.quality_column(t).label == "stat"
    assert roles.speed_column(t).label == "rate"
    assert [c.label for c in roles.headline_columns(t)] == ["lik", "stat", "rate"]


# ----------------------------------------------------------------------------- terminal summary

def test_the_terminal_summary_fits_100_columns_in_declared_order(tmp_path):
    decl = {f"metric_{i}": Output(f"metric_{i}", "fraction of something", True, order=i, headline=True)
            for i in range(9)}
    df = pd.DataFrame([r for i in range(9) for m in ("a-very-long-model-name", "short")
                       for r in rows([0.5 + i, 0.6 + i, 0.55 + i], metric=f"metric_{i}", estimator="statistic",
                                     unit="fraction of something", hib=True, model=m)])
    text = terminal_summary(SummarisedRun(df, tmp_path, decl))
    lines = text.splitlines()
    assert max(map(len, lines)) <= WIDTH
    assert lines[0].startswith("## d  (3 seeds each;") and "not shown:" in lines[0]  # says what it dropped
    assert "metric_0" in lines[1] and lines[-1] == KEY
    shown = [i for i in range(9) if f"metric_{i} " in lines[1]]
    assert shown == list(range(len(shown))) and len(shown) >= 2  # the first columns, in declared order


def test_the_terminal_summary_keeps_errors_and_marks_when_they_fit(tmp_path):
    df = pd.DataFrame(rows([3.0, 3.2], model="a") + rows([4.0, 4.1], model="b"))
    text = terminal_summary(SummarisedRun(df, tmp_path, {"nll": Output("nll", "nats", order=1, headline=True)}))
    assert "3.100±0.10 (x)*" in text and "4.050±0.050 (x)" in text and "± left out" not in text


# ----------------------------------------------------------------------------- sampler settings

def test_sampler_settings_get_their_own_table_and_chart(tmp_path):
    decl = {"stat": Output("stat", "", order=60, estimator="statistic", headline=True),
            "rate": Output("rate", "samples/s", True, kind=SPEED, order=200, headline=True)}
    df = []
    for model, base in (("diff", 1.0), ("flow", 2.0)):
        df += rows([base, base + 0.1], metric="stat", estimator="statistic", unit="", model=model, ident="stat@500")
        df += rows([100.0, 110.0], metric="rate", estimator="measured", unit="samples/s", hib=True, model=model)
    for steps, q, r in ((10, 3.0, 1000.0), (50, 1.5, 200.0)):
        df += rows([q, q + 0.1], metric="stat", estimator="statistic", unit="", model="diff",
                   ident=f"stat@500[steps={steps}]")
        df += rows([r, r * 1.1], metric="rate", estimator="measured", unit="samples/s", hib=True, model="diff",
                   ident=f"rate[steps={steps}]")
    report = SummarisedRun(pd.DataFrame(df), tmp_path, decl)
    section, = report.sections
    assert [c.label for c in section.quality.columns] == ["stat@500"]  # the plain measurements only
    assert [c.label for c in section.speed.columns] == ["rate"]
    # one row per sampler setting of the model that has variants, the fitted setting first
    assert section.variants.models == ["diff · (as fitted)", "diff · steps=10", "diff · steps=50"]
    assert [c.label for c in section.variants.columns] == ["stat@500", "rate"]
    assert section.variants.cell("diff · steps=50", "stat@500").mean == pytest.approx(1.55)
    assert section.variants.cell("diff · steps=10", "rate").mean == pytest.approx(1050.0)
    assert section.variants.cell("diff · (as fitted)", "stat@500").best  # 1.05, lower is better
    assert not section.variants.cell("diff · steps=10", "stat@500").best
    chart = next(c for c in section.charts if c.title == "quality vs samples/s per sampler setting")
    svg = chart.image.data.decode()
    assert "steps=10" in svg and "steps=50" in svg and "stat@500" in svg and "(as fitted)" in svg
    assert any(c.title == "quality vs sampling speed" and c.image is not None for c in section.charts)


def test_run_prints_compact_tables_the_report_path_and_one_line_per_failure(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")
    out = tmp_path / "run"
    code = main(["run", "--model", "stdnormal", "boom", "--dataset", "tiny", "--profile", "smoke", "--metric", "nll",
                 "--seeds", "2", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert lines[0] == "## tiny  (2 seeds each)" and "stdnormal" in lines[3] and "(x)" in lines[3]
    assert max(len(line) for line in lines if str(out) not in line) <= WIDTH
    assert f"every metric, samples and charts: {out / 'report.html'}" in lines
    assert (out / "report.html").exists()
    err = captured.err.splitlines()
    assert "failed: 1 job(s) or metric(s) (all in report.html):" in err
    assert any(line.startswith("  boom / tiny (seeds 0, 1): RuntimeError: deliberate failure in fit") for line in err)
