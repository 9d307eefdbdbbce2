"""`harness evaluate-samples`: samples from any generator measured with the sample-based metrics, in the
same tables as trained models (family external, no likelihood or speed columns); samples that do not fit
the dataset refused with exit 2 and nothing written."""

import json
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.external import ExternalSamples, SamplesRefused, check_array, read_png_folder
from harness.host import get_host


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def eight():
    return get_host().dataset("8gaussians").load(None)


def evaluate(path, out, dataset="8gaussians", name="mine", *extra):
    return main(["evaluate-samples", str(path), "--dataset", dataset, "--name", name, "--profile", "smoke",
                 "--out", str(out), "--no-progress", *extra])


def values(out) -> dict:
    df = pd.read_csv(out / "results.csv")
    return {r.metric: r for r in df.itertuples(index=False)}


def test_held_out_points_score_like_the_data_and_a_single_gaussian_clearly_worse(eight, tmp_path):
    """The validation split (never used by any metric) against the test split: precision and recall near 1,
    FID at the train-vs-test noise floor. A single Gaussian fitted to the training split covers the space
    between the modes: a low precision and share of high-quality samples."""
    np.save(tmp_path / "held_out.npy", eight.val.x.numpy())
    train = eight.train.x.double()
    chol = torch.linalg.cholesky(torch.cov(train.T))
    z = torch.randn(len(eight.val), 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.save(tmp_path / "gaussian.npy", (train.mean(0) + z @ chol.T).float().numpy())
    assert evaluate(tmp_path / "held_out.npy", tmp_path / "a", "8gaussians", "held-out") == 0
    assert evaluate(tmp_path / "gaussian.npy", tmp_path / "b", "8gaussians", "one-gaussian") == 0
    held, gauss = values(tmp_path / "a"), values(tmp_path / "b")
    assert held["precision"].value > 0.9 and held["recall"].value > 0.9
    # The floor is one draw of a statistic that spreads: for independent sets of this size, the 95th
    # percentile of FID is about 2.5 times its mean (measured for 8gaussians at 500 points), hence 3x.
    db = sqlite3.connect(tmp_path / "a" / "results.sqlite")
    (details,) = db.execute("SELECT details FROM measurements WHERE metric = 'fid'").fetchone()
    db.close()
    floor = json.loads(details)["train_vs_test"]
    assert held["fid"].value <= 3 * floor
    assert held["high_quality_share"].value == pytest.approx(1 - np.exp(-4.5), abs=0.02)  # the true share
    assert gauss["precision"].value < held["precision"].value - 0.3
    assert gauss["high_quality_share"].value < held["high_quality_share"].value - 0.3
    for out, label in ((tmp_path / "a", "held-out"), (tmp_path / "b", "one-gaussian")):
        df = pd.read_csv(out / "results.csv")
        assert set(df["model"]) == {label} and set(df["family"]) == {"external"}
        assert set(df["source"]) == {f"samples {(tmp_path / ('held_out.npy' if label == 'held-out' else 'gaussian.npy'))}"}
        ok = set(df.query("status == 'ok'")["metric"])
        assert not ok & {"nll", "bpd", "elbo_nll", "sample_throughput", "train_throughput", "peak_memory"}
        skipped = df.query("status == 'skipped'").set_index("metric")["reason"]
        assert "speed metric" in skipped["sample_throughput"] and "speed metric" in skipped["train_throughput"]
        assert "lacks log_likelihood" in skipped["nll"]


def test_too_few_samples_fail_the_metric_that_needs_more_and_say_so(eight, tmp_path, capsys):
    np.save(tmp_path / "few.npy", eight.val.x[:100].numpy())
    assert evaluate(tmp_path / "few.npy", tmp_path / "out", "8gaussians", "few", "--metric", "precision") == 1
    row = values(tmp_path / "out")["precision"]
    assert row.status == "failed" and "holds 100 samples and this metric draws more" in row.reason


def test_the_adapter_hands_out_one_draw_in_order_across_chunks():
    from harness_plugins.metrics.job_samples import draw_samples

    data = torch.arange(20.0).reshape(10, 2)
    model = ExternalSamples(data, "test")
    assert torch.equal(draw_samples(model, 7, torch.Generator(), (2,), batch_size=3), data[:7])
    assert torch.equal(model.sample(2, torch.Generator()), data[:2])  # a new draw starts again
    with pytest.raises(ValueError, match=r"holds 10 samples and this metric draws more \(at least 11\)"):
        model.sample(11, torch.Generator())


@pytest.mark.parametrize("array, dataset, message", [
    (np.zeros((10, 3), np.float32), "8gaussians", r"shape \(10, 3\); 8gaussians needs \(N, 2\)"),
    (np.array([[1.0, np.nan]] * 4), "8gaussians", "NaN or infinite"),
    (np.array([["a", "b"]] * 4), "8gaussians", "must be numbers"),
    (np.full((4, 64), 0.5), "digits", r"integer levels 0..16"),
    (np.full((4, 64), 17), "digits", r"integer levels 0..16"),
    (np.full((4, 64), 2), "digits-binary", "must be 0 or 1"),
    (np.zeros((1, 2)), "8gaussians", "at least 2"),
])
def test_samples_that_do_not_fit_the_dataset_are_refused(tmp_path, capsys, array, dataset, message):
    np.save(tmp_path / "s.npy", array)
    out = tmp_path / "out"
    assert evaluate(tmp_path / "s.npy", out, dataset) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not out.exists()


def test_files_that_cannot_be_read_safely_are_refused(tmp_path, capsys):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert evaluate(tmp_path / "objects.npy", tmp_path / "out") == 2
    assert "unpickling" in capsys.readouterr().err
    np.savez(tmp_path / "two.npz", a=np.zeros((4, 2)), b=np.zeros((4, 2)))
    assert evaluate(tmp_path / "two.npz", tmp_path / "out") == 2
    assert "name the samples 'samples'" in capsys.readouterr().err
    np.savez(tmp_path / "named.npz", samples=np.zeros((4, 2)), other=np.ones(3))
    assert check_array(np.load(tmp_path / "named.npz")["samples"], get_host().dataset("8gaussians"), "x").shape \
        == (4, 2)
    (tmp_path / "s.csv").write_text("1,2\n")
    assert evaluate(tmp_path / "s.csv", tmp_path / "out") == 2
    assert ".npy or .npz" in capsys.readouterr().err
    np.save(tmp_path / "ok.npy", np.zeros((4, 2)))
    assert evaluate(tmp_path / "ok.npy", tmp_path / "out", "8gaussians", "gmm") == 2
    assert "is a registered model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def write_pngs(folder, levels_images, levels, size=None):
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for i, img in enumerate(levels_images):
        pixels = np.round(img[0] * 255.0 / (levels - 1)).astype(np.uint8)
        picture = Image.fromarray(pixels, mode="L")
        if size is not None and i == len(levels_images) - 1:
            picture = picture.resize(size)
        picture.save(folder / f"{i:04d}.png")


def test_a_png_folder_reads_back_as_the_dataset_levels(tmp_path):
    spec = get_host().dataset("digits")
    test = spec.load(None).test.x[:20].numpy()
    write_pngs(tmp_path / "pngs", test, spec.levels)
    np.testing.assert_array_equal(read_png_folder(tmp_path / "pngs", spec), test)


def test_png_folders_of_mixed_or_wrong_sizes_are_refused(tmp_path, capsys):
    spec = get_host().dataset("digits")
    test = spec.load(None).test.x[:5].numpy()
    write_pngs(tmp_path / "mixed", test, spec.levels, size=(10, 10))
    with pytest.raises(SamplesRefused, match=r"not all one size \(8x8: 4 \(e.g. 0000.png\); 10x10: 1 \(e.g. 0004.png\)\)"):
        read_png_folder(tmp_path / "mixed", spec)
    assert evaluate(tmp_path / "mixed", tmp_path / "out", "digits") == 2
    assert "not all one size" in capsys.readouterr().err and not (tmp_path / "out").exists()
    big = get_host().dataset("mnist5k")
    write_pngs(tmp_path / "small", test, spec.levels)
    with pytest.raises(SamplesRefused, match="the images are 8x8; mnist5k images are 28x28"):
        read_png_folder(tmp_path / "small", big)
    assert evaluate(tmp_path / "small", tmp_path / "out", "8gaussians") == 2
    assert "PNG folders are for image datasets" in capsys.readouterr().err


def test_a_png_folder_is_measured_end_to_end(tmp_path):
    spec = get_host().dataset("digits")
    images = spec.load(None).train.x.numpy()  # the validation split is smaller than the 500 smoke draws
    write_pngs(tmp_path / "pngs", images[:500], spec.levels)
    assert evaluate(tmp_path / "pngs", tmp_path / "out", "digits", "png-digits", "--metric", "precision") == 0
    row = values(tmp_path / "out")["precision"]
    assert row.status == "ok" and row.value > 0.8 and row.model == "png-digits" and row.family == "external"
