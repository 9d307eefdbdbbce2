"""The metric history (harness/history/, `history add | report | regressions`).

- step detection: on a synthetic history of 30 commits (tests/history_fixtures.py) `regressions` finds
  the planted step at its commit and nothing else; on pure noise its false-positive rate over repeated
  trials stays under the declared level; the fitted levels agree with plain means;
- the file: concurrent appends from several processes lose nothing; adding the same run twice appends
  once; an unknown format version exits 2;
- `history add` on a real results directory records what the gate reads (same means), the machine, the
  declarations' role and scaling and the protocol, with the commit read from git;
- the static site: an index and a page per dataset, a chart per metric, nothing fetched, the protocol
  change marked (and, where Chromium is installed, the pages render without errors).
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import re
import subprocess

import numpy as np
import pytest

from harness.cli import main
from harness.history.format import RecordSet, append, read_history
from harness.history.series import build
from harness.history.steps import fit_steps
from tests import history_fixtures as fx


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    path = tmp_path_factory.mktemp("history") / "history.jsonl"
    return path, fx.write_history(path)


# ----------------------------------------------------------------------------- step detection


def test_regressions_finds_the_planted_step_and_no_other(history, capsys):
    path, commits = history
    code, out, _ = cli(capsys, "history", "regressions", "--history", path, "--format", "json")
    assert code == 0
    found = json.loads(out)["regressions"]
    assert [(r["dataset"], r["model"], r["metric"]) for r in found] == [("toy-a", "alpha", "loss")]
    (step,) = found
    assert (step["good"], step["bad"]) == (commits[fx.STEP_AT - 1], commits[fx.STEP_AT])
    assert step["after"] - step["before"] == pytest.approx(fx.STEP, abs=0.08)
    assert step["still_worse"] and step["p"] < 0.01 and step["worse"] is True
    assert step["bisect"].startswith(f"python -m harness history bisect {commits[fx.STEP_AT][:12]} "
                                     f"{commits[fx.STEP_AT - 1][:12]} --metric loss --model alpha --dataset toy-a")


def test_since_makes_a_newer_regression_fail_ci(history, capsys):
    path, commits = history
    code, out, err = cli(capsys, "history", "regressions", "--history", path, "--since", commits[10][:8])
    assert code == 1 and "still worse" in out and "1 regression(s) after" in err
    assert cli(capsys, "history", "regressions", "--history", path, "--since", commits[fx.STEP_AT])[0] == 0
    code, out, _ = cli(capsys, "history", "regressions", "--history", path, "--format", "md")
    assert out.startswith("## Metric history: 1 regression(s)") and "| toy-a" in out
    assert cli(capsys, "history", "regressions", "--history", path, "--since", "0000000")[0] == 2


def test_since_places_a_commit_the_history_lacks_by_its_committer_date(history, tmp_path, capsys, monkeypatch):
    path, _ = history
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    # 10:30 UTC on the day of commits 16 (10:00) and 17 (11:00), written in another time zone.
    env = {"GIT_COMMITTER_DATE": "2026-11-09T12:30:00+02:00", "GIT_AUTHOR_DATE": "2026-11-09T12:30:00+02:00"}
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "elsewhere"], check=True, env={**os.environ, **env})
    monkeypatch.chdir(repo)
    assert cli(capsys, "history", "regressions", "--history", path, "--since", "HEAD")[0] == 1


def test_the_protocol_change_splits_the_curve_instead_of_making_a_step(history):
    path, commits = history
    h = build(read_history(path))
    assert [c.sha for c in h.commits] == commits  # curve order from commit dates, not file order
    series = next(s for k, s in h.series.items() if (k.dataset, k.model, k.id) == ("toy-b", "beta", "score"))
    pieces = series.pieces()
    assert [len(p) for p in pieces] == [fx.PROTOCOL_AT, fx.COMMITS - fx.PROTOCOL_AT]
    ((position, diff),) = series.protocol_changes()
    assert position == fx.PROTOCOL_AT and diff == {"profile": ("smoke", "quick")}
    speed = [k for k in h.series if k.id == "rate"]
    assert [k.machine for k in speed] == [fx.MACHINE]  # a speed figure is per machine


def test_fitted_levels_are_the_weighted_means_of_the_segments():
    rng = np.random.default_rng(3)
    y = np.r_[rng.normal(1.0, 0.1, 12), rng.normal(2.0, 0.1, 10)]
    se = rng.uniform(0.05, 0.15, len(y))
    fit = fit_steps(y, se, alpha=0.01)
    assert fit.segments == [(0, 12), (12, 22)] and [s.index for s in fit.steps] == [12]
    var = np.array(fit.sd) ** 2
    for (a, b), mean in zip(fit.segments, fit.means):
        assert mean == pytest.approx(np.average(y[a:b], weights=1 / var[a:b]), rel=1e-12)
    step = fit.steps[0]
    assert step.z == pytest.approx((step.after - step.before) / np.hypot(step.before_se, step.after_se))


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("errors", ["three seeds", "understated 5x", "none"])
def test_false_positive_rate_on_pure_noise_is_under_the_declared_level(alpha, errors):
    rng = np.random.default_rng(42)
    trials, hits = 300, 0
    for _ in range(trials):
        if errors == "three seeds":
            seeds = rng.normal(0.0, 0.3, (30, 3))
            y, se = 5 + seeds.mean(1), seeds.std(1, ddof=1) / np.sqrt(3)
        elif errors == "understated 5x":
            y, se = 5 + rng.normal(0.0, 0.1, 30), np.full(30, 0.02)
        else:
            y, se = 5 + rng.normal(0.0, 0.1, 30), None
        hits += bool(fit_steps(y, se, alpha).steps)
    assert hits / trials <= alpha


def test_a_step_of_five_standard_errors_is_found_where_it_is():
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(50):
        y = 5 + rng.normal(0.0, 0.1, 30)
        y[11:] += 0.5
        found += [s.index for s in fit_steps(y, np.full(30, 0.1), 0.01).steps] == [11]
    assert found >= 45


# ----------------------------------------------------------------------------- the file


def _appender(path, worker: int, count: int, barrier) -> None:
    barrier.wait()
    for k in range(count):
        records = [{"dataset": "d", "model": f"w{worker}", "id": "x", "mean": float(k), "pad": "p" * 5000}]
        append(path, RecordSet(commit=f"{worker:040x}", date="2026-01-01T00:00:00+00:00", runs=[f"{worker}-{k}"],
                               records=records))


def test_concurrent_appends_from_several_processes_lose_nothing(tmp_path):
    path, workers, count = tmp_path / "h.jsonl", 6, 25
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_appender, args=(path, w, count, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    sets = read_history(path)  # every line parses: no torn or interleaved writes
    assert len(sets) == workers * count
    for w in range(workers):
        mine = [int(s.records[0]["mean"]) for s in sets if s.records[0]["model"] == f"w{w}"]
        assert mine == list(range(count))  # each writer's lines, all of them, in its order


def test_adding_the_same_run_twice_appends_once(tmp_path):
    rs = RecordSet(commit="a" * 40, date="2026-01-01", runs=["r1"], records=[{"dataset": "d", "model": "m", "id": "x",
                                                                             "mean": 1.0}])
    assert append(tmp_path / "h.jsonl", rs) is True
    assert append(tmp_path / "h.jsonl", rs) is False
    assert len(read_history(tmp_path / "h.jsonl")) == 1


def test_an_unknown_format_version_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"format": "harness-history", "version": 99, "commit": "a", "date": "d",
                                "records": []}) + "\n")
    code, _, err = cli(capsys, "history", "regressions", "--history", path)
    assert code == 2 and "version 99" in err and "line 1" in err
    path.write_text("{not json\n")
    assert cli(capsys, "history", "report", "--history", path, "--out", tmp_path / "site")[0] == 2
    assert cli(capsys, "history", "regressions", "--history", tmp_path / "missing.jsonl")[0] == 2


# ----------------------------------------------------------------------------- history add


def test_add_reads_a_results_directory_and_the_commit_from_git(tmp_path, capsys):
    from harness import regression
    from tests.test_regression import run_suite

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
                                  "-m", "the run's commit"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    results = run_suite(repo / "results", seeds=(0, 1))
    path = tmp_path / "h.jsonl"
    code, out, _ = cli(capsys, "history", "add", results, "--history", path, "--format", "json")
    assert code == 0 and json.loads(out)["appended"] is True
    (line,) = read_history(path)
    assert line.commit == head and line.subject == "the run's commit" and line.commit_date
    loaded = regression.load_results(results)
    expected = {(e.model, e.dataset, e.id): e for e in regression.summarise(loaded)}
    got = {(r["model"], r["dataset"], r["id"]): r for r in line.records}
    assert set(got) == set(expected)
    for key, e in expected.items():  # quality over both seeds; speed from the lowest seed's job alone
        seeds = 1 if key[2] == "fake_rate" else 2
        assert got[key]["mean"] == pytest.approx(e.mean, rel=1e-12) and got[key]["n_seeds"] == e.n_seeds == seeds
    (machine_id,) = {m["id"] for m in loaded.machines.values()}
    assert set(line.machines) == {machine_id} and line.machines[machine_id]["calibration"]["workloads"]
    rate = got[("fake-gaussian", "reg-blobs", "fake_rate")]
    assert (rate["role"], rate["scaling"], rate["machine"]) == ("speed", "rate", machine_id)
    assert rate["protocol"]["torch_threads"] == 1 and rate["protocol"]["device"] == "cpu"
    assert "sample_count" not in rate["protocol"]  # its count is of timings, not part of what it means
    nll = next(r for r in line.records if r["role"] == "likelihood")
    assert nll["protocol"]["profile"] == "smoke" and nll["protocol"]["dataset_version"] == loaded.datasets["reg-blobs"]
    assert "device" not in nll["protocol"] and line.environment["torch"]
    assert nll["protocol"]["sample_count"] == int(loaded.rows.loc[loaded.rows["id"] == nll["id"], "n"].iloc[0])
    # The same run again: nothing appended; with --commit another key, outside any repository.
    assert "nothing appended" in cli(capsys, "history", "add", results, "--history", path)[1]
    assert cli(capsys, "history", "add", results, "--history", path, "--commit", "f" * 40)[0] == 0
    assert [s.commit for s in read_history(path)] == [head, "f" * 40]


# ----------------------------------------------------------------------------- the site


def test_the_site_has_an_index_and_a_page_per_dataset_with_a_chart_per_metric(history, tmp_path, capsys):
    path, commits = history
    code, out, _ = cli(capsys, "history", "report", "--history", path, "--out", tmp_path / "site", "--format", "json")
    assert code == 0
    paths = json.loads(out)
    assert sorted(paths["pages"]) == ["toy-a", "toy-b"] and paths["regressions"] == 1
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="dataset-toy-a.html"' in index and 'href="dataset-toy-b.html"' in index
    assert commits[fx.STEP_AT][:10] in index and "still worse" in index
    expected_charts = {"toy-a": {"loss", "score"}, "toy-b": {"score", "rate"}}
    for dataset, page in paths["pages"].items():
        text = open(page).read()
        charts = re.findall(r'<figure class="chart" data-metric="([^"]+)"><img src="data:image/svg\+xml;base64,([^"]+)"',
                            text)
        assert {m for m, _ in charts} == expected_charts[dataset] and len(charts) == len(expected_charts[dataset])
        for _, data in charts:
            svg = base64.b64decode(data).decode()
            assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "alpha" in svg  # the legend names models
        links = re.findall(r'(?:src|href)="([^"]+)"', text)
        assert all(u.startswith("data:") or u.endswith(".html") for u in links)  # nothing fetched
    toy_b = open(paths["pages"]["toy-b"]).read()
    assert "beta: protocol changed at" in toy_b and "profile: smoke → quick" in toy_b
    assert "higher is better" in toy_b and "lower is better" in open(paths["pages"]["toy-a"]).read()


def test_the_site_renders_in_headless_chromium(history, tmp_path, capsys):
    from tests.report_browser import blank_fraction, find_browser, inspect

    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium found (optional for this test); install it with `apt-get install chromium`")
    path, _ = history
    assert cli(capsys, "history", "report", "--history", path, "--out", tmp_path / "site")[0] == 0
    seen = inspect(tmp_path / "site" / "dataset-toy-a.html", browser)
    assert seen.errors == [] and seen.facts["sections"] == ["toy-a"]
    assert seen.facts["images"] and all(i["decoded"] and i["naturalWidth"] > 0 for i in seen.facts["images"])
    assert seen.facts["external"] == ["index.html"] and blank_fraction(seen.screenshot) < 0.95


def test_normalised_speed_puts_machines_on_one_curve_by_their_calibrations():
    from harness.machine import speed_factor

    def calibration(seconds):
        return {"version": 1, "workloads": {"matmul": {"seconds": seconds}, "small_ops": {"seconds": seconds / 10}}}

    machines = {"fast": calibration(0.01), "slow": calibration(0.02)}  # "slow" takes twice as long
    sets = []
    for i in range(6):
        machine = "fast" if i % 2 else "slow"
        rate = 1000.0 if machine == "fast" else 500.0
        rec = fx.record("toy", "m", "rate", [rate, rate * 1.01, rate * 0.99], fx.PLAN[("toy-b", "alpha", "rate")])
        rec["machine"] = machine
        day = f"2026-11-0{1 + i}T10:00:00+00:00"
        sets.append(RecordSet(commit=fx.sha(i), date=day, commit_date=day, runs=[str(i)], records=[rec],
                              machines={machine: {"fingerprint": {"device": "cpu"},
                                                  "calibration": machines[machine]}}))
    per_machine = build(sets)
    assert sorted(k.machine for k in per_machine.series) == ["fast", "slow"]
    normalised = build(sets, normalise=True)
    (series,) = normalised.series.values()
    assert series.key.machine is None and normalised.normalised_to == {"cpu": "fast"}  # the newest calibrated
    assert speed_factor(machines["fast"], machines["slow"]).factor == pytest.approx(0.5)
    assert [p.mean for p in series.points] == pytest.approx([1000.0] * 6)  # a rate divided by the factor
    assert [p.factor for p in series.points] == pytest.approx([0.5, 1.0] * 3)


@pytest.mark.parametrize("sub", [[], ["add"], ["run"], ["report"], ["regressions"], ["bisect"]])
def test_help_everywhere(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["history", *sub, "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out
    assert main(["history"]) == 2


@pytest.mark.parametrize("shift, regression, unfloored", [(+0.2, False, False), (-0.2, True, True),
                                                          (-0.03, False, True)])
def test_direction_and_floor_decide_which_steps_are_regressions(shift, regression, unfloored):
    from harness.history.regressions import all_steps, regressions

    rng = np.random.default_rng(5)
    plan = fx.PLAN[("toy-a", "alpha", "score")]  # higher is better, floor 0.05 absolute
    sets = []
    for i in range(20):
        level = 0.8 + (shift if i >= 10 else 0.0)
        rec = fx.record("toy", "m", "score", level + 0.002 * rng.standard_normal(3), plan)
        day = f"2026-11-{1 + i:02d}T10:00:00+00:00"
        sets.append(RecordSet(commit=fx.sha(i), date=day, commit_date=day, runs=[str(i)], records=[rec]))
    h = build(sets)
    (step,) = all_steps(h)  # significant in every case
    assert (step.good, step.bad) == (fx.sha(9), fx.sha(10)) and step.worse is (shift < 0)
    assert bool(regressions(h)) is regression
    assert bool(regressions(h, floor=False)) is unfloored
