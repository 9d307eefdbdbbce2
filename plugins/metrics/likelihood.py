"""Test-split negative log-likelihood, in nats per example and bits per dimension for images,
with the gap to the dataset's entropy where it is known.

The estimator mark of every row is the kind the model reported (exact, bound or estimate). A bound
on log-likelihood is an upper bound on NLL; an estimate carries its own uncertainty (``shared_stderr``,
e.g. the AIS error of log Z) added in quadrature to the across-example standard error.
"""

from __future__ import annotations

import math

import torch

from harness import Capability, LikelihoodKind, Measurement, MetricContext, MetricSpec, hookimpl
from harness.data import bits_per_dim


def _evaluation_split(ctx: MetricContext):
    test = ctx.dataset.test
    limit = ctx.profile.eval_examples
    if limit and len(test) > limit:
        idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:limit]
        idx, _ = idx.sort()
        return test.x[idx], (test.y[idx] if test.y is not None else None)
    return test.x, test.y


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
    x, y = _evaluation_split(ctx)
    nll, stderr, n, kind, details = _scored(ctx, x, None)
    spec = ctx.dataset.spec
    rows = [Measurement("nll", nll, "nats", kind, higher_is_better=False, stderr=stderr, n=n, details=details)]
    if spec.is_image:
        rows.append(Measurement("bpd", bits_per_dim(nll, spec.dim), "bits/dim", kind, higher_is_better=False,
                                stderr=bits_per_dim(stderr, spec.dim), n=n, details=details))
    if spec.entropy is not None:
        gap_err = math.sqrt(stderr**2 + spec.entropy_stderr**2)
        rows.append(Measurement("nll_gap", nll - spec.entropy, "nats", kind, higher_is_better=False, stderr=gap_err,
                                n=n, details={**details, "entropy": spec.entropy}))
    if Capability.CONDITIONAL in ctx.model_spec.capabilities and y is not None:
        c_nll, c_err, c_n, c_kind, c_details = _scored(ctx, x, y)
        rows.append(Measurement("nll_conditional", c_nll, "nats", c_kind, higher_is_better=False, stderr=c_err,
                                n=c_n, details=c_details))
    return rows


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(
        name="nll",
        unit="nats",
        higher_is_better=False,
        compute=compute_nll,
        requires=[Capability.LOG_LIKELIHOOD],
        description="Test-split NLL per example (nats; bits/dim for images; gap to the true entropy when known), "
                    "marked exact, bound or estimate as the model reports it.",
    ))
