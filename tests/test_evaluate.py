"""`harness evaluate`: a run's saved models re-measured without fitting, weights from elsewhere measured as
a registered model, and bad input (pickles with code, broken artifacts, weights that do not fit) refused
with exit 2 before anything is written."""

import json
import os
import pickle
import shutil
import sqlite3

import pandas as pd
import pytest
import torch

from harness import artifacts
from harness.cli import main
from harness.store import Store


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``run --model gmm vae --dataset 8gaussians --profile smoke`` (vae shortened), as a results directory."""
    out = tmp_path_factory.mktemp("trained") / "D"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["run", "--model", "gmm", "vae", "--dataset", "8gaussians", "--profile", "smoke",
                     "--metric", "nll", "precision", "--set", "vae.steps=40", "--out", str(out), "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out


def nll(directory) -> dict:
    df = pd.read_csv(directory / "results.csv")
    return {m: v for m, v in df.query("metric == 'nll' and status == 'ok'")[["model", "value"]].itertuples(index=False)}


def jobs(directory) -> list:
    store = Store(directory, read_only=True)
    try:
        return store.jobs()
    finally:
        store.close()


def saved_state(directory, model) -> "Path":  # noqa: F821
    job = next(j for j in jobs(directory) if j["model"] == model)
    return directory / job["details"]["artifact"]["path"] / artifacts.STATE_FILE


def test_evaluate_dir_gives_the_same_nll_without_fitting(trained, tmp_path, capsys):
    out = tmp_path / "E"
    assert main(["evaluate", str(trained), "--metric", "nll", "--out", str(out), "--no-progress"]) == 0
    before, after = nll(trained), nll(out)
    assert set(after) == {"gmm", "vae"}
    assert after == before  # to the last digit: the same weights, the same deterministic estimators
    for job in jobs(out):
        details = job["details"]
        assert "fit_seconds" not in details and details["source"] == "artifact"
        assert details["loaded_from"].startswith(str(trained / "artifacts"))
    sources = pd.read_csv(out / "results.csv").groupby("model")["source"].unique()
    for job in jobs(out):
        assert list(sources[job["model"]]) == [f"artifact {job['details']['loaded_from']}"]
    printed = capsys.readouterr().out
    assert "2 model(s) restored from saved weights instead of trained" in printed


def test_a_checkpoint_from_an_earlier_run_reproduces_its_nll(trained, tmp_path):
    weights = saved_state(trained, "gmm")
    torch.save(artifacts.load_state(weights), tmp_path / "gmm.pt")  # the same tensors as a torch file
    for i, checkpoint in enumerate([weights, tmp_path / "gmm.pt"]):
        out = tmp_path / f"F{i}"
        assert main(["evaluate", "--model", "gmm", "--checkpoint", str(checkpoint), "--dataset", "8gaussians",
                     "--profile", "smoke", "--metric", "nll", "--out", str(out), "--no-progress"]) == 0
        assert nll(out) == {"gmm": nll(trained)["gmm"]}
        (job,) = jobs(out)
        assert job["details"]["source"] == "checkpoint"
        assert job["details"]["loaded_from"] == str(checkpoint.resolve())
        assert set(pd.read_csv(out / "results.csv")["source"]) == {f"checkpoint {checkpoint.resolve()}"}


class CreatesAFile:
    """Unpickling this runs ``os.system("touch PATH")``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path, capsys, writer):
    marker = tmp_path / "created-by-unpickling"
    checkpoint = tmp_path / "evil.pt"
    payload = {"weights": CreatesAFile(marker)}
    if writer == "pickle":
        with open(checkpoint, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, checkpoint)
    control = tmp_path / "control"  # the payload works: plain unpickling of the same kind of object runs it
    pickle.loads(pickle.dumps(CreatesAFile(control), protocol=2))
    assert control.exists()
    out = tmp_path / "out"
    code = main(["evaluate", "--model", "gmm", "--checkpoint", str(checkpoint), "--dataset", "8gaussians",
                 "--out", str(out)])
    assert code == 2
    assert not marker.exists() and not out.exists()
    err = capsys.readouterr().err
    assert "refused" in err and "system" in err and "Traceback" not in err


def test_weights_that_do_not_fit_the_model_are_refused_with_what_is_wrong(trained, tmp_path, capsys):
    gmm = artifacts.load_state(saved_state(trained, "gmm"))
    gmm["means"] = gmm["means"][:, :1]  # 1-D means for 2-D data
    torch.save(gmm, tmp_path / "bad.pt")
    out = tmp_path / "out"
    assert main(["evaluate", "--model", "gmm", "--checkpoint", str(tmp_path / "bad.pt"), "--dataset", "8gaussians",
                 "--out", str(out)]) == 2
    assert "does not fit model gmm on 8gaussians" in capsys.readouterr().err and not out.exists()
    # gmm's weights for the vae: the names are wrong, and the message lists them
    assert main(["evaluate", "--model", "vae", "--checkpoint", str(saved_state(trained, "gmm")), "--dataset",
                 "8gaussians", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "unexpected chol, means, weights" in err and not out.exists()
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    assert main(["evaluate", "--model", "gmm", "--checkpoint", str(tmp_path / "list.pt"), "--dataset",
                 "8gaussians", "--out", str(out)]) == 2
    assert "mapping of names to tensors" in capsys.readouterr().err and not out.exists()


def test_a_missing_or_truncated_artifact_refuses_the_directory(trained, tmp_path, capsys):
    copy = tmp_path / "D"
    shutil.copytree(trained, copy)
    state = saved_state(copy, "vae")
    state.write_bytes(state.read_bytes()[:100])
    out = tmp_path / "E"
    assert main(["evaluate", str(copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "vae/8gaussians/seed0" in err and "truncated" in err and not out.exists()
    shutil.rmtree(saved_state(copy, "vae").parent)
    assert main(["evaluate", str(copy), "--out", str(out)]) == 2
    assert "is missing" in capsys.readouterr().err and not out.exists()


def test_usage_errors(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--out", str(trained)]) == 2
    assert "--out must be a new directory" in capsys.readouterr().err
    assert main(["evaluate", str(trained), "--model", "gmm", "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "say what to evaluate" in capsys.readouterr().err
    assert main(["evaluate", "--model", "gmm", "--dataset", "8gaussians"]) == 2
    assert "missing: --checkpoint" in capsys.readouterr().err
    bare = tmp_path / "bare"
    assert main(["run", "--model", "gaussian", "--dataset", "8gaussians", "--profile", "smoke", "--metric", "nll",
                 "--no-artifacts", "--out", str(bare), "--no-progress"]) == 0
    assert not (bare / "artifacts").exists()
    assert "models not saved (--no-artifacts)" in capsys.readouterr().out
    assert main(["evaluate", str(bare), "--out", str(tmp_path / "y")]) == 2
    assert "no saved models" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_evaluate_reports_as_json(trained, tmp_path, capsys):
    out = tmp_path / "J"
    assert main(["evaluate", str(trained), "--metric", "precision", "--out", str(out), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["loaded"] == 2 and report["summary"]["artifacts"] == 2
    rows = [r for r in report["results"] if r["metric"] == "precision"]
    assert {r["model"] for r in rows} == {"gmm", "vae"}
    assert all(r["source"].startswith(f"artifact {trained / 'artifacts'}") for r in rows)


def as_bare_key_layout(source, target):
    """A copy of results directory ``source`` laid out as runs wrote it before artifact folders were named:
    each folder named by its bare job key, and the store's artifact paths pointing there."""
    shutil.copytree(source, target)
    root = target / artifacts.ARTIFACTS_DIR
    for folder in list(root.iterdir()):
        folder.rename(root / json.loads((folder / artifacts.META_FILE).read_text())["key"])
    db = sqlite3.connect(target / "results.sqlite")
    for key, text in db.execute("SELECT key, details FROM jobs").fetchall():
        details = json.loads(text)
        if "artifact" in details:
            details["artifact"]["path"] = f"{artifacts.ARTIFACTS_DIR}/{key}"
            db.execute("UPDATE jobs SET details = ? WHERE key = ?", (json.dumps(details), key))
    db.commit()
    db.close()
    return target


def test_artifact_folders_named_by_the_bare_key_are_still_read(trained, tmp_path, capsys):
    """evaluate DIR, run --resume and the report's sample panels find a model by the key its meta.json
    records, whatever its folder is called."""
    from harness.report.panels import NO_SAMPLES, shown_jobs

    old = as_bare_key_layout(trained, tmp_path / "old")
    keys = {j["model"]: j["key"] for j in jobs(old)}
    assert sorted(p.name for p in (old / "artifacts").iterdir()) == sorted(keys.values())

    out = tmp_path / "E"
    assert main(["evaluate", str(old), "--metric", "nll", "--out", str(out), "--no-progress"]) == 0
    assert nll(out) == nll(trained)
    assert {j["details"]["loaded_from"] for j in jobs(out)} == {str(old / "artifacts" / k) for k in keys.values()}
    assert sorted(p.name.split("-s0-")[0] for p in (out / "artifacts").iterdir()) == ["gmm-8gaussians",
                                                                                       "vae-8gaussians"]

    store = Store(old, read_only=True)
    shown = shown_jobs(store.results(), "8gaussians", old)
    store.close()
    assert {m: j.folder.name for m, j in shown.items()} == keys
    assert main(["report", str(old)]) == 0
    assert NO_SAMPLES not in (old / "report.html").read_text()

    assert main(["run", "--model", "gmm", "vae", "--dataset", "8gaussians", "--profile", "smoke", "--metric", "nll",
                 "precision", "recall", "--set", "vae.steps=40", "--out", str(old), "--resume", "--no-progress"]) == 0
    capsys.readouterr()
    resumed = [j for j in jobs(old) if j["key"] not in keys.values()]
    assert {j["details"]["source"] for j in resumed} == {"artifact"}
    assert {j["details"]["loaded_from"] for j in resumed} == {str(old / "artifacts" / k) for k in keys.values()}
