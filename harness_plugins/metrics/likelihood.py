"""Test-split negative log-likelihood (nll, bpd, nll_gap, nll_conditional), as the model reports it.

Test-split negative log-likelihood, in nats per example and bits per dimension for images,
with the gap to the true density where it is known.

The test examples are ``ctx.evaluation_split()``: the profile's ``eval_examples`` of a fixed
permutation of the test split (all of it when that is 0), the same examples every metric uses.

The estimator mark of every row is the kind the model reported (exact, bound or estimate). A bound
on log-likelihood is an upper bound on NLL; an estimate carries its own uncertainty (``shared_stderr``,
e.g. the AIS error of log Z) added in quadrature to the across-example standard error.

``nll_gap`` is a paired estimate where the dataset gives its true log-density: the mean over the test
examples of g_i = log p_true(x_i) - log p_model(x_i), whose expectation is KL(p_true || p_model) >= 0,
with standard error std(g) / sqrt(n) (plus the model's ``shared_stderr`` in quadrature). Pairing
removes the spread of -log p_true across examples, which dominates the NLL's own standard error
(gmm on 8gaussians: 0.0138 nats unpaired, about 0.001 paired). The true log-density of the
evaluation examples is computed once per run and dataset (``ctx.run_cache``). A dataset that gives
only its entropy gets the unpaired nll - entropy, with the NLL's and the entropy's errors in
quadrature; details say which (``paired``).

Every row keeps its per-example values (``Measurement.per_example``: -log p(x_i), its bits per
dimension, g_i, -log p(x_i | y_i)), so models can be compared paired on the same test examples, and its
protocol: the evaluation split, how many examples and the subset's seed, and the settings the model
reports for its likelihood (``LogLikelihood.protocol``: importance samples, AIS temperatures, ODE
tolerances, dequantisation ...).

The plugin also registers ``elbo_nll``, the VAE family's -ELBO (:mod:`harness_plugins.metrics.elbo`).
"""

from __future__ import annotations

import math

import torch

from harness import Capability, LikelihoodKind, Measurement, MetricContext, MetricSpec, Output, Role, Tolerance, hookimpl
from harness.data import bits_per_dim
from harness_plugins.metrics import elbo

# The declarations of what ``compute_nll`` emits. No fixed estimator: each row carries the kind the
# model reported (exact, bound or estimate).
#
# Tolerances (the regression gate's floor). Seed noise of the smoke models is a few hundredths of a
# nat; 2% or 0.05 nats is well above it and well below a real regression (a wrong variance, a broken
# layer). bpd is nll / (D ln 2): the same relative floor, and 0.005 bits/dim as the absolute one.
# nll_gap = nll - entropy sits near zero, so only an absolute floor makes sense. nll_conditional is a
# likelihood in nats like nll, with nll's floor.
NATS_TOLERANCE = Tolerance(relative=0.02, absolute=0.05)
# The evaluation subset (MetricContext.evaluation_protocol); each row adds the model's likelihood settings.
EVALUATION = ("split", "examples", "subset_seed")
OUTPUTS = (
    Output("nll", "nats", higher_is_better=False, role=Role.LIKELIHOOD, order=10, headline=True, tolerance=NATS_TOLERANCE,
           description="-log p(x) per test example (unconditional), nats", protocol=EVALUATION),
    Output("bpd", "bits/dim", higher_is_better=False, order=20, headline=True,
           tolerance=Tolerance(relative=0.02, absolute=0.005),
           description="nll / (D ln 2), for images", protocol=EVALUATION),
    Output("nll_gap", "nats", higher_is_better=False, order=30, tolerance=Tolerance(absolute=0.05),
           description="mean over test examples of log p_true - log p_model (paired; estimates KL(true || "
                       "model)), synthetic data: 0 is a perfect model", protocol=EVALUATION),
    Output("nll_conditional", "nats", higher_is_better=False, role=Role.LIKELIHOOD, order=100, tolerance=NATS_TOLERANCE,
           description="-log p(x | y) with the true labels, for conditional models", protocol=EVALUATION),
)


def _log_likelihood(ctx: MetricContext, x, labels):
    """(per-example log-likelihoods as float64 on the CPU, the model's LogLikelihood)."""
    with torch.no_grad():
        ll = ctx.model.log_likelihood(x.to(ctx.model.device), labels.to(ctx.model.device) if labels is not None else None)
    values = ll.values.detach().double().cpu()
    if values.shape != (x.shape[0],):
        raise ValueError(f"log_likelihood returned shape {tuple(values.shape)}, expected ({x.shape[0]},)")
    return values, ll


def _mean_and_stderr(values: torch.Tensor, shared_stderr: float = 0.0) -> tuple[float, float]:
    """Mean of ``values`` and its standard error: std / sqrt(n) and ``shared_stderr`` in quadrature."""
    n = values.shape[0]
    across = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return float(values.mean()), math.sqrt(across**2 + float(shared_stderr) ** 2)


def _scored(ctx: MetricContext, x, labels):
    values, ll = _log_likelihood(ctx, x, labels)
    mean, stderr = _mean_and_stderr(values, ll.shared_stderr)
    details = {"split": "test", **ll.details}
    if ll.shared_stderr:
        details["shared_stderr"] = float(ll.shared_stderr)
    return values, -mean, stderr, LikelihoodKind(ll.kind).value, details, float(ll.shared_stderr), ll.protocol


def protocol_of(ctx: MetricContext, model_protocol) -> dict:
    """A likelihood row's protocol: the evaluation subset's, then the model's likelihood settings."""
    return {**ctx.evaluation_protocol(), **(model_protocol or {})}


def true_log_density(ctx: MetricContext, x: torch.Tensor) -> torch.Tensor:
    """The dataset's true log-density of the evaluation examples ``x`` (float64), computed once per run,
    dataset and evaluation size (``ctx.run_cache``). Raises ValueError if it is not finite there."""
    dataset = ctx.dataset
    key = ("likelihood:true_log_density", dataset.name, dataset.provenance, int(ctx.profile.eval_examples or 0),
           int(x.shape[0]))
    if key not in ctx.run_cache:
        with torch.no_grad():
            values = dataset.spec.log_density(x).detach().double().cpu().reshape(-1)
        if values.shape != (x.shape[0],):
            raise ValueError(f"{dataset.name}: log_density returned shape {tuple(values.shape)}, "
                             f"expected ({x.shape[0]},)")
        bad = int((~torch.isfinite(values)).sum())
        if bad:
            raise ValueError(f"{dataset.name}: the true log-density is not finite at {bad} of its own test "
                             "examples; nll_gap needs it everywhere on the test split")
        ctx.run_cache[key] = values
    return ctx.run_cache[key]


def nll_gap(ctx: MetricContext, x, model_log_p: torch.Tensor, kind: str, shared_stderr: float,
            details: dict, protocol: dict) -> Measurement:
    """The gap to the truth: paired where the dataset gives its log-density, else nll - entropy. Its
    per-example values are g_i, or -log p(x_i) - entropy."""
    spec = ctx.dataset.spec
    n = int(model_log_p.shape[0])
    if spec.log_density is not None:
        truth = true_log_density(ctx, x)
        gap, stderr = _mean_and_stderr(truth - model_log_p, shared_stderr)
        extra = {"paired": True, "true_nll": float(-truth.mean())}
        if spec.entropy is not None:
            extra["entropy"] = spec.entropy
        return Measurement("nll_gap", gap, estimator=kind, stderr=stderr, n=n, details={**details, **extra},
                           protocol=protocol, per_example=ctx.per_example(truth - model_log_p))
    nll, nll_err = _mean_and_stderr(-model_log_p, shared_stderr)
    return Measurement("nll_gap", nll - spec.entropy, estimator=kind, stderr=math.hypot(nll_err, spec.entropy_stderr),
                       n=n, details={**details, "paired": False, "entropy": spec.entropy}, protocol=protocol,
                       per_example=ctx.per_example(-model_log_p - spec.entropy))


def compute_nll(ctx: MetricContext) -> list:
    """``nll`` is always -log p(x), unconditional, so every model's value means the same thing; a
    conditional model also reports ``nll_conditional`` = -log p(x | y) with the true labels."""
    data = ctx.evaluation_split()
    x, y = data.x, data.y
    values, nll, stderr, kind, details, shared, settings = _scored(ctx, x, None)
    n = int(values.shape[0])
    spec = ctx.dataset.spec
    protocol = protocol_of(ctx, settings)
    rows = [Measurement("nll", nll, estimator=kind, stderr=stderr, n=n, details=details, protocol=protocol,
                        per_example=ctx.per_example(-values))]
    if spec.is_image:
        rows.append(Measurement("bpd", bits_per_dim(nll, spec.dim), estimator=kind,
                                stderr=bits_per_dim(stderr, spec.dim), n=n, details=details, protocol=protocol,
                                per_example=ctx.per_example(bits_per_dim(-values, spec.dim))))
    if spec.log_density is not None or spec.entropy is not None:
        rows.append(nll_gap(ctx, x, values, kind, shared, details, protocol))
    if Capability.CONDITIONAL in ctx.model_spec.capabilities and y is not None:
        c_values, c_nll, c_err, c_kind, c_details, _, c_settings = _scored(ctx, x, y)
        rows.append(Measurement("nll_conditional", c_nll, estimator=c_kind, stderr=c_err, n=int(c_values.shape[0]),
                                details=c_details, protocol=protocol_of(ctx, c_settings),
                                per_example=ctx.per_example(-c_values)))
    return rows


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(
        name="nll",
        compute=compute_nll,
        outputs=OUTPUTS,
        requires=[Capability.LOG_LIKELIHOOD],
        description="Test-split NLL per example (nats; bits/dim for images; paired gap to the true density "
                    "when known), marked exact, bound or estimate as the model reports it.",
    ))
    register(elbo.metric_spec())
