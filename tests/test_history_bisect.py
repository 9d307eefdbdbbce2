"""`history bisect` and `history run` on a throwaway git repository: six commits of a tiny plugin module,
one of which changes its model's likelihood; the commits around it touch only a README.

Bisection (the plugin loaded through HARNESS_PLUGINS) must name that commit, train only where the
model's code differs from every commit measured so far (GOOD, and BAD after the change) and re-measure
saved models elsewhere, and leave no worktree behind. `history run` (the plugin declared as an entry
point in the repository's pyproject.toml, which the commit's worktree must provide) adds one record set
per commit. Each commit is measured by a `python -m harness` child process with every built-in model,
dataset and metric plugin but the likelihood metric disabled, so each takes seconds.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import textwrap

import pytest

from harness.cli import main

PLUGIN = textwrap.dedent('''
    """A plugin for the bisection test: a 2-D Gaussian dataset and a Gaussian model whose fitted variance
    is the data's times SCALE."""

    import math

    import torch

    from harness import (Capability, DataKind, DatasetSpec, Hyperparameters, LikelihoodKind, LogLikelihood, Model,
                         ModelSpec, Split, hookimpl)
    from harness.contracts import Splits

    SCALE = {scale}


    def _data(root=None):
        g = torch.Generator().manual_seed(0)
        return Splits(*(Split(torch.randn(n, 2, generator=g)) for n in (300, 50, 300)))


    class ScaledGaussian(Model):
        def __init__(self, spec, hparams):
            self.spec = spec
            self.var = torch.ones(())

        def fit(self, train, val, ctx):
            self.var = train.x.var() * SCALE
            ctx.step(len(train))

        def log_likelihood(self, x, labels=None):
            v = -0.5 * (x ** 2).sum(1) / self.var - x.shape[1] * 0.5 * torch.log(2 * math.pi * self.var)
            return LogLikelihood(v, LikelihoodKind.EXACT)

        def sample(self, n, generator, labels=None):
            return torch.randn(n, 2, generator=generator) * self.var.sqrt()


    @hookimpl
    def harness_register_datasets(register):
        register(DatasetSpec(name="bisect-blobs", kind=DataKind.CONTINUOUS, event_shape=(2,), load=_data))


    @hookimpl
    def harness_register_models(register):
        register(ModelSpec(name="bisect-gauss", family="bisect-test", factory=ScaledGaussian,
                           data_kinds=[DataKind.CONTINUOUS], capabilities=[Capability.SAMPLE],
                           likelihood=LikelihoodKind.EXACT, hyperparameters=Hyperparameters(defaults={{}}),
                           default_datasets=["bisect-blobs"]))
''')

PYPROJECT = """
[project]
name = "bisect-test-plugin"
version = "0.1.0"

[project.entry-points.harness]
bisect_plugin = "bisect_plugin"
"""

CHANGED_AT = 3  # the commit that changes SCALE


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def build_repo(root, entry_point: bool) -> list:
    """Six commits of bisect_plugin.py and a README (and, with ``entry_point``, a pyproject.toml that
    declares the plugin); their hashes, oldest first."""
    root.mkdir()
    _git(root, "init", "-q")
    commits = []
    for i in range(6):
        (root / "bisect_plugin.py").write_text(PLUGIN.format(scale=3.0 if i >= CHANGED_AT else 1.0))
        (root / "README").write_text(f"revision {i}\n")
        if entry_point:
            (root / "pyproject.toml").write_text(PYPROJECT)
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"change {i}")
        commits.append(_git(root, "rev-parse", "HEAD"))
    return commits


@pytest.fixture
def only_the_likelihood_metric(monkeypatch):
    # Executors, report formats and trackers stay: a run needs them; only other models, datasets and
    # metrics would cost time.
    costly = {ep.name for ep in importlib.metadata.entry_points(group="harness")
              if ep.value.startswith(("harness_plugins.models.", "harness_plugins.datasets.",
                                      "harness_plugins.metrics."))}
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", ",".join(sorted(costly - {"likelihood_metrics"})))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def repo(tmp_path, monkeypatch, only_the_likelihood_metric):
    """The repository with the plugin loaded through HARNESS_PLUGINS, here and in the children."""
    repo = tmp_path / "repo"
    commits = build_repo(repo, entry_point=False)
    monkeypatch.setenv("HARNESS_PLUGINS", "bisect_plugin")
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.chdir(repo)
    return repo, commits


@pytest.mark.slow
def test_bisect_finds_the_commit_that_changed_the_likelihood(repo, tmp_path, capsys):
    repo, commits = repo
    code = main(["history", "bisect", commits[-1], commits[0], "--metric", "nll", "--model", "bisect-gauss",
                 "--dataset", "bisect-blobs", "--work", str(tmp_path / "work"), "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["found"] and result["first_bad"]["commit"] == commits[CHANGED_AT]
    assert result["first_bad"]["subject"] == f"change {CHANGED_AT}"
    measured = {r["commit"]: r for r in result["measured"]}
    # GOOD trains; BAD trains (its model differs from GOOD's); commits whose model matches a measured
    # one re-measure that one's saved models.
    assert measured[commits[0]]["how"] == "trained" and measured[commits[-1]]["how"] == "trained"
    reused = {c: r["how"] for c, r in measured.items() if r["how"].startswith("reused")}
    assert reused and all(r["verdict"] in ("good", "bad") for r in measured.values())
    for c, how in reused.items():
        source = next(s for s in commits if how.endswith(s[:10]))
        assert (commits.index(c) >= CHANGED_AT) == (commits.index(source) >= CHANGED_AT)
    good, bad = measured[commits[0]]["value"], measured[commits[-1]]["value"]
    assert bad > good + 0.1  # the inflated variance: a worse nll
    for c, r in measured.items():
        assert r["verdict"] == ("bad" if commits.index(c) >= CHANGED_AT else "good")
    assert _git(repo, "worktree", "list").count("\n") == 0  # only the main work tree is left


def test_bisect_refuses_a_good_commit_that_is_not_an_ancestor(repo, capsys):
    _, commits = repo
    code = main(["history", "bisect", commits[1], commits[4], "--metric", "nll", "--model", "bisect-gauss",
                 "--dataset", "bisect-blobs"])
    assert code == 2 and "not a descendant" in capsys.readouterr().err
    assert main(["history", "bisect", commits[4], commits[1], "--metric", "nll", "--model", "no-such-model",
                 "--dataset", "bisect-blobs"]) == 2


@pytest.mark.slow
def test_history_run_adds_each_commit_run_in_its_own_worktree(tmp_path, capsys, monkeypatch,
                                                             only_the_likelihood_metric):
    repo = tmp_path / "repo"
    commits = build_repo(repo, entry_point=True)
    monkeypatch.chdir(repo)
    history = tmp_path / "history.jsonl"
    code = main(["history", "run", commits[0], commits[-1], "--history", str(history), "--format", "json",
                 "--run-args", "--model bisect-gauss --dataset bisect-blobs --metric nll --profile smoke"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = json.loads(out.out)["commits"]
    assert [r["exit"] for r in rows] == [0, 0] and all(r["appended"] for r in rows)
    from harness.history.format import read_history

    sets = read_history(history)
    assert [s.commit for s in sets] == [commits[0], commits[-1]]
    assert [s.subject for s in sets] == ["change 0", "change 5"]
    nll = [next(r["mean"] for r in s.records if r["id"] == "nll") for s in sets]
    assert nll[1] > nll[0] + 0.1  # each commit ran its own code (SCALE changed between them)
    assert _git(repo, "worktree", "list").count("\n") == 0
