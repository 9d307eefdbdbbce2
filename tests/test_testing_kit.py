"""The conformance kit (harness.testing) itself: it fails what is wrong, naming the check, passes what
is right, and its numbers agree with independent references (scipy, brute force)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from harness import DataKind
from harness.testing import check, conformance_suite
from harness.testing.density import enumeration_sum, grid_integral, states
from harness.testing.reference import REFERENCE, SAMPLER
from harness.testing.datasets import check_dataset
from harness.testing.tiny import (BINARY_ON, COVARIANCE, DISCRETE_PROBS, MEANS, continuous_log_density,
                                  tiny_datasets)
from tests.fake_plugins import nonconforming
from tests.fake_plugins.extra import Registrations

PLUGINS = {"nonconforming": nonconforming}


@pytest.fixture(scope="module")
def nonconforming_report():
    names = [s.name for s in nonconforming.MODELS + nonconforming.DATASETS] + ["undeclared"]
    return check(names, plugins=PLUGINS)


def status(report, subject, name, variant=None):
    found = report.find(subject, name, variant)
    assert found is not None, f"no check {subject} {name} {variant}"
    return found


# ----------------------------------------------------------------------------- what is wrong fails


def test_a_correct_model_passes_every_check(nonconforming_report):
    results = [r for r in nonconforming_report.results if r.subject == "model:diag"]
    assert {r.name for r in results if r.passed} == {"fit", "samples", "seed_reproducible", "seed_varies",
                                                    "log_likelihood", "normalised", "state_round_trip"}
    assert [r.name for r in results if r.status == "skipped"] == ["labels"]


@pytest.mark.parametrize("model, failing, words", [
    ("shifted", "normalised", "mass 1.64"),  # exp(0.5) times the mass of diag inside the box
    ("unseeded", "seed_reproducible", "same seed differ"),
    ("float64-samples", "samples", "torch.float64"),
    ("claims-estimate", "log_likelihood", "kind estimate, but claims-estimate declares exact"),
    ("loose-bound", "normalised", "a lower bound"),
    ("biased-estimate", "normalised", "4 x shared_stderr 0.01"),
    ("label-blind", "labels", "does not follow its labels"),
    ("forgetful", "state_round_trip", "restored instance cannot sample"),
])
def test_a_model_broken_one_way_fails_the_check_for_it(nonconforming_report, model, failing, words):
    results = {r.name: r for r in nonconforming_report.results if r.subject == f"model:{model}"}
    failed = [name for name, r in results.items() if r.failed]
    assert failed == [failing], {n: results[n].message for n in failed}
    message = results[failing].describe()
    assert message.startswith(f"model:{model}[continuous]::{failing} failed: ")
    assert words in message


def test_a_correct_dataset_passes_every_check(nonconforming_report):
    results = [r for r in nonconforming_report.results if r.subject == "dataset:normal2d"]
    assert len(results) == 7 and all(r.passed for r in results), [r.describe() for r in results]


@pytest.mark.parametrize("dataset, failing, words", [
    ("unseeded-data", ["provenance"], "two loads give different data"),
    ("wrong-entropy", ["entropy"], "standard errors apart"),
    # A density off by a constant is not normalised, and its Monte-Carlo entropy moves by that constant.
    ("unnormalised", ["density", "entropy"], f"is {math.exp(0.2):.4f}"),
    ("float64-data", ["splits"], "torch.float64"),
    ("stray-labels", ["labels"], "declares num_classes=0"),
])
def test_a_dataset_broken_one_way_fails_the_check_for_it(nonconforming_report, dataset, failing, words):
    results = {r.name: r for r in nonconforming_report.results if r.subject == f"dataset:{dataset}"}
    assert [n for n, r in results.items() if r.failed] == failing
    assert words in results[failing[0]].message


def test_a_metric_emitting_an_undeclared_measurement_fails(nonconforming_report):
    result = status(nonconforming_report, "metric:undeclared", "outputs_declared")
    assert result.failed and "'surprise', which it does not declare" in result.message


def test_a_plugin_raising_outside_any_check_fails_its_group_and_every_test_of_the_suite(nonconforming_report):
    result = status(nonconforming_report, "model:touchy", "runs", "continuous")
    assert result.failed and "RuntimeError: accepts() is broken" in result.message
    suite = conformance_suite("touchy", plugins=PLUGINS)
    ids = [mark.id for mark in suite.pytestmark[0].args[1]]
    assert len(ids) == 8
    with pytest.raises(pytest.fail.Exception, match="accepts\\(\\) is broken"):
        suite(ids[-1])


def test_the_shifted_model_is_off_by_exactly_its_offset(nonconforming_report):
    """The normalisation check's mass is exp(offset) times that of the correct model."""
    diag, shifted = (next(r for r in nonconforming_report.results
                          if r.subject == f"model:{spec.name}" and r.name == "normalised")
                     for spec in nonconforming.MODELS[:2])
    mass = lambda r: float(r.message.split("mass ")[1].split()[0])  # noqa: E731
    assert mass(shifted) / mass(diag) == pytest.approx(math.exp(nonconforming.OFFSET), rel=1e-3)


# ----------------------------------------------------------------------------- what is right passes


def test_an_ais_estimate_of_log_z_passes_the_estimate_rule():
    """On the tiny binary space the rbm enumerates log Z (exact); with exact_max_units=0 it estimates it
    by AIS and reports an estimate, whose mass must be 1 within 4 of its standard errors + 0.05 nats."""
    report = check(["rbm"], overrides=["rbm.exact_max_units=0", "rbm.steps=300"])
    result = report.find("model:rbm", "normalised", "binary")
    assert result.passed, result.message
    assert result.message.startswith("p(x) (estimate) over all 16 states")


def test_the_reference_models_pass_every_model_check():
    references = Registrations(models=[REFERENCE, SAMPLER])
    report = check([REFERENCE.name, SAMPLER.name], plugins={"kit-references": references})
    assert {r.subject for r in report.results} == {f"model:{REFERENCE.name}", f"model:{SAMPLER.name}"}
    assert not [r.describe() for r in report.results if r.failed]
    labels = [r for r in report.results if r.subject == f"model:{REFERENCE.name}" and r.name == "labels"]
    assert [r.status for r in labels] == ["passed"] * 3  # one per data kind


def test_the_tiny_datasets_pass_every_dataset_check():
    for kind in DataKind:
        for spec in tiny_datasets(kind):
            results = check_dataset(spec)
            assert not [r.describe() for r in results if r.failed]


# ----------------------------------------------------------------------------- independent references


def test_grid_integral_matches_scipy_over_the_box():
    """The midpoint rule of N(0.3, 0.8^2) x N(-0.2, 0.5^2) over a box equals the product of scipy's
    normal CDF differences, within the rule's own error estimate."""
    lo, hi = torch.tensor([-1.0, -1.5]), torch.tensor([2.0, 0.5])
    mu, sd = np.array([0.3, -0.2]), np.array([0.8, 0.5])

    def log_density(x):
        return torch.as_tensor(stats.norm.logpdf(x.double().numpy(), mu, sd).sum(1))

    integral = grid_integral(log_density, lo, hi)
    exact = np.prod(stats.norm.cdf(hi.numpy(), mu, sd) - stats.norm.cdf(lo.numpy(), mu, sd))
    assert abs(integral.value - exact) <= integral.error + 1e-6
    assert integral.error < 1e-3


def test_enumeration_sums_every_state_once():
    probs = np.array([0.2, 0.5, 0.3])  # independent units, 3 levels, 2 units: 9 states
    every = states(3, 2)
    assert len(every) == 9 and len({tuple(s.tolist()) for s in every}) == 9
    log_prob = lambda x: torch.as_tensor(np.log(probs[x.long().numpy()]).sum(1))  # noqa: E731
    assert enumeration_sum(log_prob, 3, (2,)).value == pytest.approx(1.0, abs=1e-12)
    assert enumeration_sum(log_prob, 3, (2,), replicates=4).value == pytest.approx(1.0, abs=1e-12)


def test_the_continuous_tiny_density_matches_scipy():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    ref = np.logaddexp(*(stats.multivariate_normal.logpdf(x.numpy(), MEANS[c, :2].numpy(), COVARIANCE[:2, :2].numpy())
                         for c in (0, 1))) + math.log(0.5)
    assert np.allclose(continuous_log_density(x).numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("kind", [DataKind.BINARY, DataKind.DISCRETE])
def test_the_discrete_tiny_entropy_matches_brute_force(kind):
    spec = tiny_datasets(kind)[0]
    table = (np.stack([1 - BINARY_ON.numpy(), BINARY_ON.numpy()], -1) if kind is DataKind.BINARY
             else DISCRETE_PROBS.numpy())
    p = np.array([0.5 * sum(np.prod([table[c, i, s[i]] for i in range(4)]) for c in (0, 1))
                  for s in np.ndindex(*(table.shape[-1],) * 4)])
    assert spec.entropy == pytest.approx(stats.entropy(p), abs=1e-12)


def test_the_guide_describes_every_check():
    from pathlib import Path

    from harness.testing import datasets, metrics, models

    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for name in models.CHECKS + datasets.CHECKS + metrics.CHECKS:
        assert f"`{name}`" in guide, name


# ----------------------------------------------------------------------------- the suite and the CLI


def test_check_has_help(capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["check", "--help"])
    assert exc.value.code == 0 and "--format" in capsys.readouterr().out


def test_the_suite_refuses_an_expected_failure_it_does_not_plan():
    with pytest.raises(ValueError, match="not planned"):
        conformance_suite("diag", plugins=PLUGINS, expected_failures={"model:diag[binary]::normalised": "no"})


test_suite_on_a_correct_plugin = conformance_suite("diag", "normal2d", plugins=PLUGINS)
test_suite_with_an_expected_failure = conformance_suite(
    "shifted", plugins=PLUGINS, expected_failures={"model:shifted[continuous]::normalised": "deliberate offset"})


def test_the_fixture_fails_with_every_failing_check(harness_check):
    harness_check("diag", plugins=PLUGINS)
    with pytest.raises(pytest.fail.Exception) as failure:
        harness_check("shifted", "unseeded", plugins=PLUGINS)
    text = str(failure.value)
    assert "2 conformance check(s) failed" in text  # one each: a fault is reported by the check it breaks
    assert "model:shifted[continuous]::normalised failed" in text
    assert "model:unseeded[continuous]::seed_reproducible failed" in text


@pytest.fixture
def cli(monkeypatch, capsys):
    """``python -m harness ARGS`` in this process, with the nonconforming plugins: (exit code, out, err)."""
    from harness.cli import main

    def run(*args, plugins="tests.fake_plugins.nonconforming"):
        monkeypatch.setenv("HARNESS_PLUGINS", plugins)
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_check_exits_0_when_everything_passes_and_1_naming_the_failed_check(cli):
    code, out, _ = cli("check", "diag")
    assert code == 0 and "0 failed" in out
    code, out, _ = cli("check", "diag", "shifted", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["counts"]["failed"] == 1
    assert [r["id"] for r in report["results"] if r["status"] == "failed"] == ["model:shifted[continuous]::normalised"]
    code, out, _ = cli("check", "shifted")
    assert code == 1 and "failed:\nmodel:shifted[continuous]::normalised failed: p(x) (exact)" in out


def test_check_names_a_plugin_or_family_and_refuses_unknown_names(cli):
    code, out, _ = cli("check", "tests.fake_plugins.nonconforming", "--format", "json")
    assert code == 1
    assert {"model:diag", "dataset:normal2d", "metric:undeclared"} <= {r["subject"] for r in json.loads(out)["results"]}
    code, out, _ = cli("check", "nonconforming", "--format", "json")
    assert {r["subject"] for r in json.loads(out)["results"]} == {f"model:{s.name}" for s in nonconforming.MODELS}
    code, _, err = cli("check", "shiftd")
    assert code == 2 and "did you mean 'shifted'" in err and "Traceback" not in err
    assert cli("check")[0] == 2


def test_check_reports_a_plugin_that_failed_to_import(cli):
    code, out, _ = cli("check", "tests.fake_plugins.broken", plugins="tests.fake_plugins.broken")
    assert code == 1
    assert "plugin:tests.fake_plugins.broken::loads failed: plugin 'tests.fake_plugins.broken' (tests.fake_plugins.broken) " \
           "failed: ImportError: this plugin is deliberately broken" in out


def test_the_command_line_entry_point_exits_with_the_code(cli_env):
    """The same through a real process: ``python -m harness check`` exits 1 on a failing check."""
    env = {**cli_env, "HARNESS_PLUGINS": "tests.fake_plugins.nonconforming"}
    out = subprocess.run([sys.executable, "-m", "harness", "check", "shifted"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 1 and "model:shifted[continuous]::normalised failed" in out.stdout
