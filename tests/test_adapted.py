"""Objects of the user's own code measured without a plugin (`--model py:PACKAGE.MODULE:FACTORY`,
`evaluate-samples --generator`), end to end: the true density of 8gaussians scores the dataset's entropy
and samples like held-out data; a zuko flow and a user's nn.Module train and sit beside gmm in one table;
NaN log-likelihoods fail their job only; unseeded samples are marked; config.toml reproduces the jobs;
saved modules are re-measured; a generator's stream measures like the same samples in a file. The
objects are in tests/adapted_models.py."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.contracts import evaluation_indices
from harness.host import get_host
from harness.profiles import get_profile
from harness.store import Store

REF = "py:tests.adapted_models:"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def eight():
    spec = get_host().dataset("8gaussians")
    return spec, spec.load(None)


def rows(out) -> dict:
    """(model, measurement id) -> row of results.csv."""
    df = pd.read_csv(out / "results.csv")
    return {(r.model, r.id if isinstance(r.id, str) else r.metric): r for r in df.itertuples(index=False)}


def details(out, model, metric) -> dict:
    store = Store(out, read_only=True)
    try:
        (raw,) = store.db.execute("SELECT m.details FROM measurements m JOIN jobs j ON m.key = j.key WHERE j.model = ? "
                                  "AND m.metric = ?", (model, metric)).fetchone()
    finally:
        store.close()
    return json.loads(raw)


def job_rows(out) -> dict:
    store = Store(out, read_only=True)
    try:
        return {j["model"]: j for j in store.jobs()}
    finally:
        store.close()


def run(out, *args) -> int:
    return main(["run", "--dataset", "8gaussians", "--out", str(out), "--no-progress", *args])


def gaussian_mle_nll(data, profile: str) -> float:
    """Test NLL of the maximum-likelihood diagonal Gaussian of the training split (scipy), on the
    evaluation examples of ``profile``."""
    from scipy import stats

    train, test = data.train.x.double().numpy(), data.test.x.double().numpy()
    test = test[evaluation_indices(len(test), get_profile(profile).eval_examples)]
    return float(-stats.norm(train.mean(0), train.std(0)).logpdf(test).sum(1).mean())


def test_the_mixture_is_the_datasets_density(eight):
    """The test module's mixture, written from the toy's definition, against the dataset's closed form."""
    from tests.adapted_models import true_8gaussians

    spec, data = eight
    x = torch.cat([data.test.x[:500], torch.randn(200, 2, generator=torch.Generator().manual_seed(0)) * 4])
    assert torch.allclose(true_8gaussians(spec).log_prob(x.double()), spec.log_density(x), atol=1e-10, rtol=0)


def test_the_true_density_scores_the_entropy_and_samples_like_held_out_data(eight, tmp_path):
    """At smoke with every metric: nll is the dataset's entropy within its standard error (2 of them: the
    evaluation examples are one draw), nll_gap is 0, and the samples score as the train-vs-test reference
    of the fidelity metrics; at quick the same for nll and FID/precision."""
    spec, _ = eight
    out = tmp_path / "smoke"
    assert run(out, "--model", REF + "true_8gaussians", "--profile", "smoke") == 0
    r = rows(out)
    nll, gap = r[("true_8gaussians", "nll")], r[("true_8gaussians", "nll_gap")]
    assert abs(nll.value - spec.entropy) <= 2 * nll.stderr
    assert nll.estimator == "exact" and nll.value == pytest.approx(details(out, "true_8gaussians", "nll_gap")["true_nll"])
    assert abs(gap.value) < 1e-9
    fid, precision = r[("true_8gaussians", "fid@500")], r[("true_8gaussians", "precision@500")]
    assert fid.value <= 3 * details(out, "true_8gaussians", "fid")["train_vs_test"]
    for name in ("precision", "recall"):
        assert r[("true_8gaussians", f"{name}@500")].value >= details(out, "true_8gaussians", name)["train_vs_test"] - 0.05
    assert r[("true_8gaussians", "modes_covered")].value == 8
    assert r[("true_8gaussians", "high_quality_share")].value == pytest.approx(1 - math.exp(-4.5), abs=0.02)
    xent = r[("true_8gaussians", "sample_xent_gap")]
    assert abs(xent.value) <= 3 * xent.stderr
    df = pd.read_csv(out / "results.csv")
    assert set(df["source"]) == {"py:tests.adapted_models:true_8gaussians (tests unversioned)"}
    assert set(df["family"]) == {"adapted"} and set(df.query("status == 'failed'")["metric"]) == set()
    assert "no training examples" in r[("true_8gaussians", "train_throughput")].reason
    adapted = job_rows(out)["true_8gaussians"]["details"]["adapted"]
    assert adapted["reproducible"] is True and adapted["likelihood_declared_by"].startswith("torch.distributions")
    assert precision.value > 0.9

    quick = tmp_path / "quick"
    assert run(quick, "--model", REF + "true_8gaussians", "--profile", "quick", "--metric", "nll", "fid",
               "precision") == 0
    r = rows(quick)
    nll = r[("true_8gaussians", "nll")]
    assert abs(nll.value - spec.entropy) <= 2 * nll.stderr and abs(r[("true_8gaussians", "nll_gap")].value) < 1e-9
    assert r[("true_8gaussians", "fid@2000")].value <= 3 * details(quick, "true_8gaussians", "fid")["train_vs_test"]
    assert r[("true_8gaussians", "precision@2000")].value >= \
        details(quick, "true_8gaussians", "precision")["train_vs_test"] - 0.03


def test_a_users_module_trains_beside_gmm_in_worker_processes(eight, tmp_path, capsys):
    """`--executor process`: the workers rebuild each object from its reference. The nn.Module's own fit
    reaches the maximum-likelihood Gaussian (scipy); a NaN log_prob fails that job only (exit 1); samples
    from numpy's unseeded generator are marked not reproducible."""
    _, data = eight
    out = tmp_path / "D"
    code = run(out, "--model", "gmm", REF + "gaussian_module", REF + "nan_density", REF + "numpy_sampler",
               "--profile", "smoke", "--metric", "nll", "precision", "train_throughput", "--executor", "process",
               "--jobs", "2")
    captured = capsys.readouterr()
    assert code == 1
    r, jobs = rows(out), job_rows(out)
    assert {m for m, _ in r} == {"gmm", "gaussian_module", "nan_density", "numpy_sampler"}
    assert jobs["gmm"]["status"] == jobs["gaussian_module"]["status"] == jobs["numpy_sampler"]["status"] == "ok"
    assert r[("gaussian_module", "nll")].value == pytest.approx(gaussian_mle_nll(data, "smoke"), abs=1e-3)
    assert r[("gaussian_module", "nll")].estimator == "exact"  # the module's class attribute likelihood = "exact"
    assert "no training examples" in r[("gaussian_module", "train_throughput")].reason  # its fit takes no ctx
    assert jobs["nan_density"]["status"] == "failed"
    assert "log_prob gave NaN for" in r[("nan_density", "nll")].reason
    assert r[("nan_density", "precision@500")].status == "ok"
    assert r[("numpy_sampler", "precision@500")].source.endswith("; samples not reproducible")
    assert jobs["numpy_sampler"]["details"]["adapted"]["reproducible"] is False
    assert "numpy_sampler" in captured.err and "different samples" in captured.err
    assert jobs["gaussian_module"]["details"]["adapted"]["reproducible"] is True


def test_zuko_flow_trains_beside_gmm_and_is_measured_as_built_or_from_its_weights(tmp_path):
    """A zuko NSF built by a factory (no plugin): its fit trains it within the job's budget and reports its
    steps; measured as built (evaluate) it is far worse; its saved weights restore the trained numbers."""
    pytest.importorskip("zuko")
    out = tmp_path / "D"
    assert run(out, "--model", "gmm", REF + "nsf", "--profile", "smoke", "--metric", "nll", "fid",
               "train_throughput") == 0
    r = rows(out)
    trained = r[("nsf", "nll")].value
    assert trained < 3.2 and trained < r[("gmm", "nll")].value + 0.2  # the toy's entropy is 2.83 nats
    assert r[("nsf", "train_throughput")].status == "ok" and r[("nsf", "fid@500")].status == "ok"
    assert job_rows(out)["nsf"]["details"]["adapted"]["fit"] == "fit(train, val, ctx)"
    common = ["--dataset", "8gaussians", "--profile", "smoke", "--metric", "nll", "--no-progress"]
    assert main(["evaluate", "--model", REF + "nsf", "--out", str(tmp_path / "built"), *common]) == 0
    assert rows(tmp_path / "built")[("nsf", "nll")].value > trained + 1
    state = out / job_rows(out)["nsf"]["details"]["artifact"]["path"] / "state.safetensors"
    assert main(["evaluate", "--model", f"mine={REF}nsf", "--checkpoint", str(state), "--out",
                 str(tmp_path / "restored"), *common]) == 0
    assert rows(tmp_path / "restored")[("mine", "nll")].value == pytest.approx(trained, abs=1e-6)


def test_config_toml_records_the_reference_and_reproduces_the_jobs(eight, tmp_path):
    """--name, --likelihood and --set NAME.KEY (a keyword of the factory) are written to config.toml; run
    --config gives the same job keys and numbers, and evaluate DIR restores the saved module."""
    _, data = eight
    out = tmp_path / "D"
    assert run(out, "--model", REF + "gaussian_module", "--name", "mine", "--set", "mine.steps=40", "--likelihood",
               "bound", "--profile", "smoke", "--metric", "nll") == 0
    text = (out / "config.toml").read_text()
    assert f'models = ["mine={REF}gaussian_module"]' in text and 'likelihood = "bound"' in text
    assert '"mine.steps" = 40' in text
    first = job_rows(out)["mine"]
    assert first["hparams"] == {"steps": 40, "lr": 0.05}
    assert main(["run", "--config", str(out / "config.toml"), "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    again = job_rows(tmp_path / "again")["mine"]
    assert again["key"] == first["key"] and again["hparams"] == first["hparams"]
    nll = rows(out)[("mine", "nll")]
    assert nll.estimator == "bound" and rows(tmp_path / "again")[("mine", "nll")].value == nll.value
    assert abs(nll.value - gaussian_mle_nll(data, "smoke")) < 0.05  # 40 steps: near the MLE, not at it
    assert main(["evaluate", str(out), "--metric", "nll", "--out", str(tmp_path / "E"), "--no-progress"]) == 0
    restored = rows(tmp_path / "E")[("mine", "nll")]
    assert restored.value == nll.value and restored.source.startswith("artifact ")


def test_a_generator_function_measures_like_its_samples_in_a_file(eight, tmp_path):
    """The stream (batches of 96, the last one short) and the same samples in a .npy give the same numbers."""
    from tests.adapted_models import held_out_batches

    spec, _ = eight
    np.save(tmp_path / "held_out.npy", np.concatenate(list(held_out_batches(spec))))
    common = ["--dataset", "8gaussians", "--profile", "smoke", "--no-progress"]
    assert main(["evaluate-samples", "--generator", REF + "held_out_batches", "--out", str(tmp_path / "g"),
                 *common]) == 0
    assert main(["evaluate-samples", str(tmp_path / "held_out.npy"), "--name", "held_out_batches", "--out",
                 str(tmp_path / "f"), *common]) == 0
    streamed, saved = rows(tmp_path / "g"), rows(tmp_path / "f")
    ok = {k for k, r in saved.items() if r.status == "ok"}
    assert {"fid@500", "precision@500", "recall@500"} <= {i for _, i in ok}
    assert {k for k, r in streamed.items() if r.status == "ok"} == ok
    for key in ok:
        assert streamed[key].value == saved[key].value, key
    assert streamed[next(iter(ok))].source == "samples py:tests.adapted_models:held_out_batches (tests unversioned)"
