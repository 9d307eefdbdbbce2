"""Report tables: aggregation over seeds (mean, standard error across seeds), declarations read from
the store (column order, kind, integers), marks."""

import math

import pandas as pd
import pytest

from harness.contracts import SPEED, Output
from harness.report import comparison_tables, summarise


def rows(values, metric="nll", estimator="exact", stderr=0.5, unit="nats", model="m", hib=False, ident=None):
    return [dict(run_id="r", model=model, family="f", dataset="d", seed=i, profile="smoke", metric=metric,
                 id=ident or metric, value=v, stderr=stderr, unit=unit, estimator=estimator, n=10, status="ok",
                 reason="", higher_is_better=hib) for i, v in enumerate(values)]


def test_several_seeds_give_the_mean_and_the_standard_error_across_seeds():
    values = [1.0, 2.0, 4.0]
    s = summarise(pd.DataFrame(rows(values))).iloc[0]
    assert s["mean"] == pytest.approx(7 / 3)
    assert s["stderr"] == pytest.approx(pd.Series(values).std(ddof=1) / math.sqrt(3))  # not the rows' own 0.5
    assert s["seeds"] == 3 and s["seed_list"] == [0, 1, 2]
    cell = comparison_tables(pd.DataFrame(rows(values)))["d"].loc["m", "nll [nats]"]
    assert cell == f"2.333 ± {pd.Series(values).std(ddof=1) / math.sqrt(3):.4f} (x)"


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
    assert list(quality.columns) == ["zeta", "alpha_count [modes]"]  # declared order, not alphabetical
    assert quality.loc["m", "alpha_count [modes]"] == "8 ± 0.5000"
    assert list(comparison_tables(df, "speed", outputs)["d"].columns) == ["rate [samples/s]"]
