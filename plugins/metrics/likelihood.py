"""Test-split negative log-likelihood, in nats per example and bits per dimension for images,
with the gap to the dataset's entropy where it is known.

The test examples are ``ctx.evaluation_split()``: the profile's ``eval_examples`` of a fixed
permutation of the test split (all of it when that is 0), the same examples every metric uses.

The estimator mark of every row is the kind the model reported (exact, bound or estimate). A bound
on log-likelihood is an upper bound on NLL; an estimate carries its own uncertainty (``shared_stderr``,
e.g. the AIS error of log Z) added in quadrature to the across-example standard error.
"""

from __future__ import annotations

import math

import torch

from harness import Capability, LikelihoodKind, Measurement, MetricContext, MetricSpec, Output, Tolerance, hookimpl
from harness.data import bits_per_dim

# The declarations of what ``compute_nll`` emits. No fixed estimator: each row carries the kind the
# model reported (exact, bound or estimate).
#
# Tolerances (the regression gate's floor). Seed noise of the smoke models is a few hundredths of a
# nat; 2% or 0.05 nats is well above it and well below a real regression (a wrong variance, a broken
# layer). bpd is nll / (D ln 2): the same relative floor, and 0.005 bits/dim as the absolute one.
# nll_gap = nll - entropy sits near zero, so only an absolute floor makes sense. nll_conditional is a
# likelihood in nats like nll, with nll's floor.
NATS_TOLERANCE = Tolerance(relative=0.02, absolute=0.05)
OUTPUTS = (
    Output("nll", "nats", higher_is_better=False, order=10, headline=True, tolerance=NATS_TOLERANCE,
           description="-log p(x) per test example (unconditional), nats"),
    Output("bpd", "bits/dim", higher_is_better=False, order=20, headline=True,
           tolerance=Tolerance(relative=0.02, absolute=0.005),
           description="nll / (D ln 2), for images"),
    Output("nll_gap", "nats", higher_is_better=False, order=30, tolerance=Tolerance(absolute=0.05),
           description="nll minus the dataset's true entropy (synthetic data): 0 is a perfect model"),
    Output("nll_conditional", "nats", higher_is_better=False, order=100, tolerance=NATS_TOLERANCE,
           description="-log p(x | y) with the true labels, for conditional models"),
)


def _scored(ctx: MetricContext, x, labels):
    with torch.no_grad():
        ll = ctx.model.log_likelihood(x.to(ctx.model.device), labels.to(ctx.model.device) if labels is not None else None)
    values = ll.values.detach().double().cpu()
    if values.shape != (x.shape[0],):
        raise ValueError(f"log_likelihood returned shape {tuple(values.shape)}, expected ({x.shape[0]},)")
    n = values.shape[0]
    nll = float(-values.mean())
    across = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    stderr = math.sqrt(across**2 + float(ll.shared_stderr) ** 2)
    details = {"split": "test", **ll.details}
    if ll.shared_stderr:
        details["shared_stderr"] = float(ll.shared_stderr)
    return nll, stderr, n, LikelihoodKind(ll.kind).value, details


def compute_nll(ctx: MetricContext) -> list:
    """``nll`` is always -log p(x), unconditional, so every model's value means the same thing; a
    conditional model also reports ``nll_conditional`` = -log p(x | y) with the true labels."""
    data = ctx.evaluation_split()
    x, y = data.x, data.y
    nll, stderr, n, kind, details = _scored(ctx, x, None)
    spec = ctx.dataset.spec
    rows = [Measurement("nll", nll, estimator=kind, stderr=stderr, n=n, details=details)]
    if spec.is_image:
        rows.append(Measurement("bpd", bits_per_dim(nll, spec.dim), estimator=kind,
                                stderr=bits_per_dim(stderr, spec.dim), n=n, details=details))
    if spec.entropy is not None:
        gap_err = math.sqrt(stderr**2 + spec.entropy_stderr**2)
        rows.append(Measurement("nll_gap", nll - spec.entropy, estimator=kind, stderr=gap_err,
                                n=n, details={**details, "entropy": spec.entropy}))
    if Capability.CONDITIONAL in ctx.model_spec.capabilities and y is not None:
        c_nll, c_err, c_n, c_kind, c_details = _scored(ctx, x, y)
        rows.append(Measurement("nll_conditional", c_nll, estimator=c_kind, stderr=c_err, n=c_n, details=c_details))
    return rows


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(
        name="nll",
        compute=compute_nll,
        outputs=OUTPUTS,
        requires=[Capability.LOG_LIKELIHOOD],
        description="Test-split NLL per example (nats; bits/dim for images; gap to the true entropy when known), "
                    "marked exact, bound or estimate as the model reports it.",
    ))
