"""Tests of the vae plugin: likelihood heads against scipy, the ELBO and IWAE bounds against closed
forms (linear-Gaussian VAE) and numerical integration (a trained 2-latent VAE), the cVAE's labels,
and the conv paths' shapes."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from harness import Capability, DatasetSpec, FitContext, LikelihoodKind, MetricContext, Split
from harness.contracts import Dataset, Splits
from harness.profiles import get_profile
from harness_plugins.metrics import elbo
from harness_plugins.models import vae as vae_plugin
from harness_plugins.models.vae.heads import DiscretizedLogisticHead, GaussianHead
from harness_plugins.models.vae.model import CVAEModel, VAEModel

torch.set_num_threads(1)


def _specs():
    found = []
    vae_plugin.harness_register_models(found.append)
    return {s.name: s for s in found}


def _hp(model="vae", **overrides):
    """The model's declared base values with ``overrides`` (each checked against the declaration)."""
    declared = _specs()[model].hyperparameters
    return {**declared.defaults, **{k: declared.check(k, v) for k, v in overrides.items()}}


def _spec(name="toy", kind="continuous", shape=(2,), levels=None, classes=0, splits=None):
    return DatasetSpec(name=name, kind=kind, event_shape=shape, levels=levels, num_classes=classes,
                       load=lambda root: splits)


def _binary_digits(n_train=1000):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images >= 8, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])


# ----------------------------------------------------------------------------- likelihood heads


def test_discretized_logistic_matches_scipy_and_sums_to_one():
    levels = 17
    head = DiscretizedLogisticHead(levels)
    gen = torch.Generator().manual_seed(0)
    mu = torch.rand(5, generator=gen) * 1.4 - 0.2  # some means outside [0, 1]
    log_s = torch.tensor([-6.5, -4.0, -2.0, 0.0, 1.0])
    raw_scale = head.min_log_scale + torch.log(torch.expm1(log_s - head.min_log_scale))  # inverse softplus
    x = torch.arange(levels, dtype=torch.float32)
    out = torch.stack([mu[:, None].expand(5, levels), raw_scale[:, None].expand(5, levels)], 1)  # (5, 2, K)
    # log_prob sums over the last axis, so score one level at a time
    logp = torch.stack([head.log_prob(out[:, :, k:k + 1], x[k:k + 1].expand(5, 1)) for k in range(levels)], 1)
    edges = (np.arange(levels + 1) - 0.5) / (levels - 1)
    edges[0], edges[-1] = -np.inf, np.inf
    for i in range(5):
        cdf = stats.logistic.cdf(edges, loc=float(mu[i]), scale=math.exp(float(log_s[i])))
        ref = np.diff(cdf)
        ok = ref > 1e-30
        np.testing.assert_allclose(logp[i].double().exp().numpy(), ref, atol=1e-6)
        np.testing.assert_allclose(logp[i][ok].double().numpy(), np.log(ref[ok]), rtol=1e-4, atol=1e-3)
        assert abs(logp[i].double().exp().sum().item() - 1.0) < 1e-5


def test_discretized_logistic_samples_follow_its_probabilities():
    head = DiscretizedLogisticHead(5)
    out = torch.tensor([[[0.4], [math.log(0.15)]]]).expand(20000, 2, 1).contiguous()
    draws = head.sample(out, torch.Generator().manual_seed(1))[:, 0].long()
    counts = torch.bincount(draws, minlength=5).numpy()
    probs = torch.stack([head.log_prob(out[:1], torch.full((1, 1), float(k))) for k in range(5)]).exp().numpy()[:, 0]
    assert stats.chisquare(counts, probs / probs.sum() * counts.sum()).pvalue > 1e-3


def test_gaussian_head_inverse_and_density():
    head = GaussianHead()
    logvar = torch.tensor([-3.0, 0.0, 2.0])
    raw = head.raw_for_logvar(logvar)
    out = torch.stack([torch.zeros(3), raw])[None]  # (1, 2, 3)
    torch.testing.assert_close(head.logvar(out)[0], logvar, atol=1e-5, rtol=0)
    x = torch.tensor([[0.3, -1.0, 2.0]])
    ref = stats.norm.logpdf(x.numpy()[0], scale=np.exp(0.5 * logvar.numpy())).sum()
    assert abs(head.log_prob(out, x).item() - ref) < 1e-4


# ----------------------------------------------------------------------------- linear-Gaussian VAE


def _linear_gaussian_vae(dim=4, latent=2, seed=0):
    """A VAE whose decoder is x = W z + b + N(0, s^2 I) and whose encoder is a deliberately
    imperfect (shifted, wider, diagonal) version of the exact posterior."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(dim, latent, generator=gen, dtype=torch.float64)
    b = torch.randn(dim, generator=gen, dtype=torch.float64)
    s2 = 0.3
    spec = _spec(shape=(dim,))
    model = VAEModel(spec, _hp(depth=0, latent=latent, iwae_k=16, eval_rows=4096))
    post_cov = torch.linalg.inv(torch.eye(latent, dtype=torch.float64) + W.T @ W / s2)
    gain = post_cov @ W.T / s2  # posterior mean = gain (x - b)
    enc, dec = model.encoder.net[0], model.decoder.net[0]
    with torch.no_grad():
        dec.weight.zero_()
        dec.weight[:dim] = W.float()
        dec.bias[:dim] = b.float()
        dec.bias[dim:] = model.head.raw_for_logvar(torch.full((dim,), math.log(s2)))
        enc.weight.zero_()
        enc.weight[:latent] = 0.9 * gain.float()
        enc.bias[:latent] = (-0.9 * gain @ b + 0.1).float()
        enc.bias[latent:] = torch.log(1.5 * torch.diagonal(post_cov)).float()
    marginal = stats.multivariate_normal(b.numpy(), (W @ W.T + s2 * torch.eye(dim, dtype=torch.float64)).numpy())
    x = torch.as_tensor(marginal.rvs(300, random_state=1), dtype=torch.float32)
    log_px = torch.as_tensor(marginal.logpdf(x.double().numpy()))
    # KL(q(z|x) || p(z|x)) in closed form: the exact ELBO gap.
    q_mean = (0.9 * (x.double() - b) @ gain.T + 0.1)
    q_var = 1.5 * torch.diagonal(post_cov)
    p_mean = (x.double() - b) @ gain.T
    prec = torch.linalg.inv(post_cov)
    diff = p_mean - q_mean
    kl = 0.5 * ((prec.diagonal() * q_var).sum() + ((diff @ prec) * diff).sum(1) - latent
                + torch.logdet(post_cov) - torch.log(q_var).sum())
    return model, x, log_px, kl


def _mean_se(v):
    v = v.double()
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


def test_linear_gaussian_bounds_against_closed_form():
    model, x, log_px, kl = _linear_gaussian_vae()
    elbo = model.elbo(x, samples=256, generator=torch.Generator().manual_seed(2))
    gap, se = _mean_se(log_px - elbo)
    ref_gap = float(kl.mean())
    assert ref_gap > 0.05  # the encoder is imperfect on purpose
    assert abs(gap - ref_gap) < 4 * se + 1e-3  # E[log p - ELBO] = KL(q || posterior)
    gaps = {}
    for k in (1, 5, 50, 500):
        iw = model.iwae(x, k, generator=torch.Generator().manual_seed(10 + k))
        gaps[k] = _mean_se(log_px - iw)
        # ELBO <= IWAE_k <= log p(x), each up to its Monte Carlo error
        d, d_se = _mean_se(iw - elbo)
        assert d > -4 * d_se - 1e-4
        assert gaps[k][0] > -4 * gaps[k][1] - 1e-4
    assert abs(gaps[1][0] - ref_gap) < 4 * gaps[1][1] + 1e-3  # IWAE_1 is an unbiased ELBO estimate
    for small, large in ((1, 5), (5, 50), (50, 500)):  # the gap shrinks with k (independent draws)
        assert gaps[large][0] < gaps[small][0] + 4 * math.hypot(gaps[large][1], gaps[small][1])
    assert gaps[5][0] < 0.5 * ref_gap
    assert gaps[500][0] < 0.02 * ref_gap + 4 * gaps[500][1]  # IWAE approaches log p(x)


def test_log_likelihood_reports_the_iwae_bound():
    model, x, log_px, _ = _linear_gaussian_vae()
    ll = model.log_likelihood(x[:50])
    assert ll.kind is LikelihoodKind.BOUND
    assert ll.details["k"] == 16 and ll.details["estimator"] == "iwae"
    expected = model.iwae(x[:50], 16)  # the same default evaluation seed
    torch.testing.assert_close(ll.values.double(), expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- a trained VAE, by quadrature


def _log_px_by_quadrature(model, x, half_width=6.0, points=241):
    """log p(x) = log integral p(x|z) N(z; 0, I) dz over a 2-D grid (midpoint rule)."""
    h = 2 * half_width / points
    g = -half_width + h * (torch.arange(points, dtype=torch.float64) + 0.5)
    zz = torch.cartesian_prod(g, g)
    with torch.no_grad():
        logits = model.decoder(zz.float(), None)[:, 0].double()  # (G, D)
    log_pz = -0.5 * (zz**2).sum(1) - math.log(2 * math.pi)
    xf = x.reshape(x.shape[0], -1).double()
    # Bernoulli log p(x|z) for every (x, z): x . logits - sum softplus(logits)
    log_px_z = xf @ logits.T - torch.nn.functional.softplus(logits).sum(1)[None]
    return torch.logsumexp(log_px_z + log_pz[None], 1) + 2 * math.log(h)


def test_trained_vae_bounds_against_numerical_integration():
    train, test = _binary_digits()
    spec = _spec(name="digits-binary", kind="binary", shape=(1, 8, 8), classes=10)
    model = VAEModel(spec, _hp(latent=2, hidden=64, depth=2, steps=300, lr=3e-3, batch_size=128))
    model.fit(train, test, FitContext(seed=0))
    x = test.x[:100]
    fine = _log_px_by_quadrature(model, x, points=241)
    coarse = _log_px_by_quadrature(model, x, points=161)
    assert float((fine - coarse).abs().max()) < 1e-3  # the quadrature has converged
    elbo = model.elbo(x, samples=64, generator=torch.Generator().manual_seed(3))
    means = {}
    previous = elbo
    for k in (1, 5, 50, 500):
        iw = model.iwae(x, k, generator=torch.Generator().manual_seed(20 + k))
        gap, se = _mean_se(fine - iw)
        assert gap > -4 * se - 1e-3  # IWAE_k <= log p(x)
        step, step_se = _mean_se(iw - previous)
        assert step > -4 * step_se - 1e-3  # ELBO <= IWAE_1 <= IWAE_5 <= ... (paired, within MC error)
        means[k] = gap
        previous = iw
    assert means[500] < 0.25 * means[1]  # the bound tightens towards log p(x)


def test_elbo_nll_metric_is_not_below_the_iwae_nll():
    model, x, _, _ = _linear_gaussian_vae()
    splits = Splits(Split(x), Split(x), Split(x))
    spec = _spec(shape=(x.shape[1],), splits=splits)
    metric = elbo.metric_spec()
    vae_spec = _specs()["vae"]
    assert metric.incompatibility(vae_spec, spec) is None
    (output,) = metric.outputs
    assert output.name == "elbo_nll" and output.unit == "nats" and output.higher_is_better is False
    ctx = MetricContext(model=model, model_spec=vae_spec, dataset=Dataset(spec, splits, "x"),
                        profile=get_profile("quick"), device=torch.device("cpu"), seed=0)
    (m,) = metric.compute(ctx)
    m = metric.bind(m)  # refuses a measurement the spec does not declare
    iwae_nll = -model.log_likelihood(x).values.double()
    assert m.metric == "elbo_nll" and m.estimator == "bound" and m.higher_is_better is False and m.unit == "nats"
    assert m.n == len(x)
    assert m.value > float(iwae_nll.mean()) - 4 * m.stderr
    assert abs(m.stderr - float((-model.elbo(x)).std() / math.sqrt(len(x)))) < 1e-9


def test_elbo_nll_is_registered_by_the_metrics_group_and_applies_to_the_vae_family(host):
    metric = host.registry.metrics["elbo_nll"]
    assert host.owner("metrics", "elbo_nll") == "likelihood_metrics"
    assert not hasattr(vae_plugin, "harness_register_metrics")  # the models group registers no metric
    toy = host.registry.datasets["8gaussians"]
    assert metric.incompatibility(host.registry.models["cvae"], toy) is None
    assert "for the vae family; gmm is gmm" in metric.incompatibility(host.registry.models["gmm"], toy)


def test_elbo_nll_metric_takes_the_evaluation_split():
    """Under the smoke profile (eval_examples 1000) a 1200-example test split is cut to the fixed
    evaluation subset that every other metric uses, not to its first rows."""
    model, x, _, _ = _linear_gaussian_vae()
    test = torch.cat([x, x.flip(0), x, x.flip(0)])[:1200]
    splits = Splits(Split(x), Split(x), Split(test))
    spec = _spec(shape=(x.shape[1],), splits=splits)
    metric = elbo.metric_spec()
    ctx = MetricContext(model=model, model_spec=_specs()["vae"], dataset=Dataset(spec, splits, "x"),
                        profile=get_profile("smoke"), device=torch.device("cpu"), seed=0)
    subset = ctx.evaluation_split()
    assert len(subset) == 1000 and not torch.equal(subset.x, test[:1000])
    (m,) = metric.compute(ctx)
    assert m.n == 1000
    assert m.value == pytest.approx(float(-model.elbo(subset.x).mean()), abs=1e-9)


# ----------------------------------------------------------------------------- cVAE


def _separable_set(n_per_class=600, seed=0):
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    x = centres[y] + 0.5 * torch.randn(len(y), 2, generator=gen)
    return Split(x, y), centres


def test_cvae_samples_honour_labels():
    train, centres = _separable_set()
    spec = _spec(name="three-blobs", classes=3)
    model = CVAEModel(spec, _hp("cvae", steps=400, hidden=64, depth=2, lr=3e-3, batch_size=128))
    model.fit(train, train, FitContext(seed=0))
    labels = torch.arange(3).repeat_interleave(200)
    s = model.sample(len(labels), torch.Generator().manual_seed(5), labels=labels)
    nearest = torch.cdist(s, centres).argmin(1)
    assert float((nearest == labels).float().mean()) > 0.95
    # No labels: drawn uniformly, so the three blobs get equal shares (chi-square).
    s = model.sample(3000, torch.Generator().manual_seed(6))
    counts = torch.bincount(torch.cdist(s, centres).argmin(1), minlength=3).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    ll = model.log_likelihood(train.x[:20], train.y[:20])
    assert ll.details["conditional"] is True and ll.kind is LikelihoodKind.BOUND
    # Without labels the bound marginalises over the class prior: log sum_y p(y) p(x|y) >= log p(x|y) + log p(y)
    marg = model.log_likelihood(train.x[:20]).values.double()
    assert bool((marg >= ll.values.double() + math.log(1 / 3) - 1e-4).all())


def test_cvae_refuses_unlabelled_data_and_declares_conditional():
    specs = _specs()
    assert Capability.CONDITIONAL in specs["cvae"].capabilities
    assert Capability.CONDITIONAL not in specs["vae"].capabilities
    assert specs["cvae"].incompatibility(_spec(classes=0)) is not None
    assert specs["cvae"].incompatibility(_spec(classes=3)) is None
    assert specs["vae"].likelihood is LikelihoodKind.BOUND


# ----------------------------------------------------------------------------- conv paths


@pytest.mark.parametrize("shape,kind,levels", [((1, 8, 8), "binary", None), ((1, 28, 28), "discrete", 256),
                                               ((3, 32, 32), "discrete", 256), ((1, 28, 28), "continuous", None)])
@pytest.mark.parametrize("cls", [VAEModel, CVAEModel])
def test_conv_paths_shapes(shape, kind, levels, cls):
    gen = torch.Generator().manual_seed(0)
    top = 2 if kind == "binary" else (levels or 1)
    x = torch.randint(0, top, (16, *shape), generator=gen).float()
    if kind == "continuous":
        x = torch.rand(16, *shape, generator=gen)
    y = torch.arange(16) % 4
    spec = _spec(kind=kind, shape=shape, levels=levels, classes=4)
    hp = _hp("cvae" if cls is CVAEModel else "vae", arch="conv", steps=2, channels=4, hidden=16, batch_size=8,
             iwae_k=3)
    model = cls(spec, hp)
    assert model.arch == "conv"
    model.fit(Split(x, y), Split(x, y), FitContext(seed=0))
    labels = torch.tensor([0, 1, 2]) if model.conditional else None
    s = model.sample(3, torch.Generator().manual_seed(1), labels=labels)
    assert s.shape == (3, *shape) and s.dtype == torch.float32
    if kind != "continuous":
        assert bool((s == s.round()).all()) and float(s.min()) >= 0 and float(s.max()) <= top - 1
    ll = model.log_likelihood(x[:5], y[:5] if model.conditional else None)
    assert ll.values.shape == (5,) and bool(torch.isfinite(ll.values).all())
    assert ll.kind is LikelihoodKind.BOUND and ll.details["k"] == 3
    assert model.elbo(x[:5], y[:5] if model.conditional else None).shape == (5,)


def test_auto_architecture_and_reproducible_fit():
    assert VAEModel(_spec(kind="binary", shape=(1, 8, 8)), _hp()).arch == "mlp"
    assert VAEModel(_spec(kind="binary", shape=(1, 28, 28)), _hp()).arch == "conv"
    train, _ = _binary_digits(200)
    spec = _spec(kind="binary", shape=(1, 8, 8))
    samples = []
    for _ in range(2):
        model = VAEModel(spec, _hp(steps=5, hidden=16))
        model.fit(train, train, FitContext(seed=7))
        samples.append(model.sample(10, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(samples[0], samples[1], atol=0, rtol=0)
