"""Trained-model artifacts: the layout every fitted job leaves under DIR/artifacts (checked against the
training data and scipy), atomic writes, integrity checks, --no-artifacts, and run --resume restoring a
saved model instead of training it again."""

import json
import sqlite3

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from harness import artifacts
from harness.profiles import get_profile
from harness.runner import Runner
from tests.fake_plugins.extra import Registrations


def run(host, out, models, metrics=("nll",), seeds=(0,), **kw):
    runner = Runner(host, get_profile("smoke"), out, seeds=list(seeds), metrics=list(metrics), **kw)
    store, summary = runner.run(runner.plan(models, ["tiny"], False))
    jobs = store.jobs()
    df = store.results()
    store.close()
    return jobs, df, summary


def folder_bytes(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_every_fitted_model_is_saved_in_the_fixed_layout(host, tmp_path):
    jobs, df, summary = run(host, tmp_path, ["gaussian", "stdnormal"], seeds=[0, 1])
    root = tmp_path / artifacts.ARTIFACTS_DIR
    names = {f"{j['model']}-tiny-s{j['seed']}-{j['key'][:8]}": j["key"] for j in jobs}
    assert sorted(p.name for p in root.iterdir()) == sorted(names)
    assert summary["artifacts"] == 4 and summary["artifact_bytes"] == folder_bytes(root)
    data = host.dataset("tiny").load(None)
    for job in jobs:
        folder = artifacts.find_artifact(root, job["key"])
        assert names[folder.name] == job["key"]
        assert job["details"]["artifact"]["path"] == f"artifacts/{folder.name}"
        meta = json.loads((folder / artifacts.META_FILE).read_text())
        assert (meta["model"], meta["dataset"], meta["seed"], meta["profile"]) == \
            (job["model"], "tiny", job["seed"], "smoke")
        assert meta["hparams"] == job["hparams"] and meta["provenance"] == job["provenance"]
        assert meta["key"] == job["key"] and meta["state"]["format"] == "safetensors"
        assert meta["versions"]["torch"] == torch.__version__
        assert not (folder / artifacts.SAMPLE_LABELS_FILE).exists()  # unconditional models
        state = artifacts.load_artifact(folder)[1]
        gen = torch.Generator().manual_seed(job["seed"] * 1_000_003 + artifacts.SAMPLE_SEED_OFFSET)
        samples = np.load(folder / artifacts.SAMPLES_FILE)
        assert samples.dtype == np.float32 and samples.shape == (artifacts.SAMPLE_COUNT, 2)
        if job["model"] == "gaussian":
            # the closed-form fit, recomputed with numpy from the training split
            train = data.train.x.double().numpy()
            mean, cov = train.mean(0), np.cov(train.T, bias=True)
            np.testing.assert_allclose(state["mu"].numpy(), mean, rtol=1e-10)
            np.testing.assert_allclose((state["L"] @ state["L"].T).numpy(), cov, rtol=1e-5, atol=1e-9)
            z = torch.randn(artifacts.SAMPLE_COUNT, 2, generator=gen, dtype=torch.float64)
            np.testing.assert_allclose(samples, (state["mu"] + z @ state["L"].T).float().numpy())
        else:
            assert state == {}
            mean, cov = np.zeros(2), np.eye(2)
            np.testing.assert_array_equal(samples, torch.randn(artifacts.SAMPLE_COUNT, 2, generator=gen).numpy())
        grid = np.load(folder / artifacts.DENSITY_FILE)
        x, y = grid["x"], grid["y"]
        test = data.test.x.double().numpy()
        lo, hi = np.quantile(test, 0.005, axis=0), np.quantile(test, 0.995, axis=0)
        np.testing.assert_allclose([x[0], y[0]], lo - 0.1 * (hi - lo), rtol=1e-6)
        np.testing.assert_allclose([x[-1], y[-1]], hi + 0.1 * (hi - lo), rtol=1e-6)
        assert grid["log_density"].shape == (artifacts.GRID_SIZE, artifacts.GRID_SIZE)
        xx, yy = np.meshgrid(x, y)  # row i is y[i], column j is x[j]
        expected = multivariate_normal(mean, cov).logpdf(np.stack([xx, yy], -1).astype(np.float32).astype(np.float64))
        np.testing.assert_allclose(grid["log_density"], expected, rtol=1e-4, atol=1e-4)


def test_no_artifacts_saves_nothing_and_the_summary_says_so(host, tmp_path):
    jobs, _, summary = run(host, tmp_path, ["gaussian"], save_artifacts=False)
    assert not (tmp_path / artifacts.ARTIFACTS_DIR).exists()
    assert summary["artifacts"] == 0 and summary["artifact_bytes"] == 0
    assert "artifact" not in jobs[0]["details"]


class Unsaveable:
    """Wraps the stdnormal fake; export_state fails half-way through the artifact."""

    @staticmethod
    def factory(spec, hparams):
        from tests.fake_plugins.fakes import StandardNormal

        class Broken(StandardNormal):
            def export_state(self):
                raise RuntimeError("this state cannot be exported")

        return Broken(spec, hparams)


def test_a_model_that_cannot_be_saved_keeps_its_numbers_and_leaves_no_partial_folder(host, tmp_path):
    from harness import DataKind, LikelihoodKind, ModelSpec

    host.add_plugin(Registrations(models=[ModelSpec("unsaveable", "fake", Unsaveable.factory, [DataKind.CONTINUOUS],
                                                    likelihood=LikelihoodKind.EXACT)]), "unsaveable")
    jobs, df, summary = run(host, tmp_path, ["unsaveable"])
    assert summary["ok"] == 1 and summary["artifacts"] == 0
    assert "this state cannot be exported" in jobs[0]["details"]["artifact_error"]
    assert df.query("metric == 'nll'")["status"].tolist() == ["ok"]
    assert list((tmp_path / artifacts.ARTIFACTS_DIR).iterdir()) == []  # the temporary folder is gone too


def test_a_truncated_changed_or_incomplete_artifact_is_refused(host, tmp_path):
    jobs, _, _ = run(host, tmp_path, ["gaussian"])
    folder = tmp_path / jobs[0]["details"]["artifact"]["path"]
    state = folder / artifacts.STATE_FILE
    original = state.read_bytes()
    artifacts.verify(folder)
    state.write_bytes(original[:-10])
    with pytest.raises(artifacts.ArtifactError, match="truncated"):
        artifacts.load_artifact(folder)
    state.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # same size, one bit changed
    with pytest.raises(artifacts.ArtifactError, match="sha256"):
        artifacts.load_artifact(folder)
    (folder / artifacts.META_FILE).unlink()
    with pytest.raises(artifacts.ArtifactError, match="incomplete"):
        artifacts.load_artifact(folder)
    with pytest.raises(artifacts.ArtifactError, match="missing"):
        artifacts.read_meta(folder.with_name("nothing-here"))


def fits(log):
    return [line for line in log.read_text().splitlines() if line.startswith("start")] if log.exists() else []


def test_resume_with_another_metric_restores_the_saved_model_instead_of_training(host, tmp_path, monkeypatch):
    log = tmp_path / "fits.log"
    monkeypatch.setenv("HARNESS_TEST_FIT_LOG", str(log))
    out = tmp_path / "run"
    first, df1, _ = run(host, out, ["sleepy"], metrics=["nll"])
    assert len(fits(log)) == 1
    jobs, df2, summary = run(host, out, ["sleepy"], metrics=["nll", "train_throughput"], resume=True)
    assert len(fits(log)) == 1, "the model was trained again"
    assert summary["loaded"] == 1 and summary["ok"] == 1
    second = next(j for j in jobs if j["key"] != first[0]["key"])
    assert second["details"]["source"] == "artifact" and "fit_seconds" not in second["details"]
    saved = out / first[0]["details"]["artifact"]["path"]
    assert second["details"]["loaded_from"] == str(saved)
    rows = df2[df2["key"] == second["key"]]
    assert rows.query("metric == 'nll'")["value"].tolist() == df1.query("metric == 'nll'")["value"].tolist()
    assert set(rows["source"]) == {f"artifact {saved}"}
    throughput = rows.query("metric == 'train_throughput'")
    assert throughput["status"].tolist() == ["skipped"] and "loaded, not trained" in throughput["reason"].iloc[0]


def test_resume_trains_again_when_the_store_never_recorded_the_saved_model(host, tmp_path, monkeypatch):
    """A model saved by a job killed before its result was stored is not trusted: the job runs again."""
    log = tmp_path / "fits.log"
    monkeypatch.setenv("HARNESS_TEST_FIT_LOG", str(log))
    out = tmp_path / "run"
    run(host, out, ["sleepy"], metrics=["nll"])
    db = sqlite3.connect(out / "results.sqlite")
    db.execute("DELETE FROM jobs")
    db.commit()
    db.close()
    _, _, summary = run(host, out, ["sleepy"], metrics=["nll"], resume=True)
    assert len(fits(log)) == 2 and summary["loaded"] == 0



def test_folder_names_are_safe_file_names():
    key = "0123456789abcdef0123456789abcdef"
    assert artifacts.folder_name("gmm", "8gaussians", 0, key) == "gmm-8gaussians-s0-01234567"
    assert artifacts.folder_name("my model/v2", "../data:x", 3, key) == "my_model_v2-_data_x-s3-01234567"
    assert artifacts.folder_name(".hidden", "\u00e9t\u00e9", 1, key) == "hidden-_t_-s1-01234567"
    assert len(artifacts.folder_name("m" * 300, "d", 0, key)) < 100


def test_an_artifact_replaces_its_own_older_folder_and_never_another_jobs(host, tmp_path):
    jobs, _, _ = run(host, tmp_path, ["gaussian"])
    key, root = jobs[0]["key"], tmp_path / artifacts.ARTIFACTS_DIR
    named = tmp_path / jobs[0]["details"]["artifact"]["path"]
    named.rename(root / key)  # the same job's model under the bare-key name
    assert artifacts.find_artifact(root, key) == root / key
    run(host, tmp_path, ["gaussian"])  # the same job again: its artifact is written anew
    assert [p.name for p in root.iterdir()] == [named.name] and artifacts.find_artifact(root, key) == named

    meta = json.loads((named / artifacts.META_FILE).read_text())
    other = key[:8] + "f" * 24  # another job whose key begins the same
    with pytest.raises(artifacts.ArtifactError, match=f"holds the model of job {key}, not of job {other}"):
        artifacts.write_artifact(root, other, None, None, None, meta)
    assert artifacts.find_artifact(root, other) is None and artifacts.verify(named)["key"] == key
