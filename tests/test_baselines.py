"""The gaussian and gmm baselines against independent references (scipy, scikit-learn)."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from harness import FitContext, Split


def fitted_gmm(host, k=3, d=2, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d)) * 3
    a = rng.normal(size=(k, d, d))
    covs = a @ a.transpose(0, 2, 1) + 0.3 * np.eye(d)
    spec = host.model("gmm")
    model = spec.factory(host.dataset("8gaussians"), spec.resolve_hparams("smoke", host.dataset("8gaussians")))
    model.set_parameters(weights, means, covs)
    return model, weights, means, covs


def test_gmm_log_likelihood_equals_sklearn_score_samples(host):
    model, weights, means, covs = fitted_gmm(host, k=4)
    ref = GaussianMixture(n_components=4, covariance_type="full")
    ref.weights_, ref.means_, ref.covariances_ = weights, means, covs
    ref.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(covs))
    x = np.random.default_rng(1).normal(size=(500, 2)) * 4
    ours = model.log_likelihood(torch.as_tensor(x, dtype=torch.float32)).values.numpy()
    np.testing.assert_allclose(ours, ref.score_samples(x.astype(np.float32).astype(np.float64)), rtol=1e-6, atol=1e-8)


def test_gmm_em_fit_matches_sklearn_likelihood(host):
    """EM from our seeding reaches the same mean log-likelihood as scikit-learn's EM (to 1e-2 nats)."""
    data = host.dataset("8gaussians").load(None)
    spec = host.model("gmm")
    train = Split(data.train.x[:5000])
    hparams = {**spec.hyperparameters.defaults, "components": 8, "max_iter": 300, "tol": 1e-7}
    model = spec.factory(host.dataset("8gaussians"), hparams)
    model.fit(train, data.val, FitContext(seed=0))
    ours = float(model.log_likelihood(data.test.x).values.double().mean())
    ref = GaussianMixture(8, covariance_type="full", random_state=0, n_init=3, tol=1e-7, max_iter=300)
    ref.fit(train.x.double().numpy())
    theirs = float(ref.score_samples(data.test.x.double().numpy()).mean())
    assert ours == pytest.approx(theirs, abs=1e-2)


def test_gmm_samples_follow_its_density(host):
    model, weights, means, covs = fitted_gmm(host, k=2)
    x = model.sample(40000, torch.Generator().manual_seed(0)).double().numpy()
    mix_mean = (weights[:, None] * means).sum(0)
    assert np.abs(x.mean(0) - mix_mean).max() < 0.1


def test_gaussian_is_the_closed_form_mle_and_matches_scipy(host):
    data = host.dataset("checkerboard").load(None)
    spec = host.model("gaussian")
    model = spec.factory(host.dataset("checkerboard"), spec.resolve_hparams("smoke", host.dataset("checkerboard")))
    model.fit(data.train, data.val, FitContext(seed=0))
    xtr = data.train.x.double().numpy()
    ref = multivariate_normal(xtr.mean(0), np.cov(xtr.T, bias=True))
    ours = model.log_likelihood(data.test.x).values.numpy()
    np.testing.assert_allclose(ours, ref.logpdf(data.test.x.double().numpy()), rtol=1e-5)


def test_gaussian_on_discrete_data_reports_the_dequantisation_bound(host):
    from harness import DataKind, DatasetSpec
    from harness.contracts import Splits

    levels = 4
    g = torch.Generator().manual_seed(0)
    make = lambda n: Split(torch.randint(0, levels, (n, 3), generator=g).float())  # noqa: E731
    spec = DatasetSpec(name="disc", kind=DataKind.DISCRETE, levels=levels, event_shape=(3,),
                       load=lambda r: Splits(make(2000), make(100), make(500)))
    mspec = host.model("gaussian")
    model = mspec.factory(spec, mspec.resolve_hparams("smoke", spec))
    splits = spec.load(None)
    model.fit(splits.train, splits.val, FitContext(seed=0))
    ll = model.log_likelihood(splits.test.x)
    assert ll.kind.value == "bound" and ll.details["dequantized"]
    # A lower bound on the discrete log-likelihood: never above the uniform-discrete optimum + slack.
    assert float(ll.values.mean()) <= -3 * np.log(levels) + 0.05
    s = model.sample(100, torch.Generator().manual_seed(1))
    assert set(s.unique().tolist()) <= set(range(levels))
