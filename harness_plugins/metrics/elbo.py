"""The ``elbo_nll`` metric: -ELBO per example for the vae family, the looser of its two likelihood bounds.

A VAE's ``log_likelihood`` reports the importance-weighted (IWAE) bound, which ``nll`` shows; this
metric reports -ELBO (``model.elbo(x)``: E_q[log p(x|z)] - KL(q(z|x) || p(z)), one Monte Carlo draw per
example) on the evaluation split, so both bounds appear in the results. It applies to models of the
family ``vae`` (read from the model's declaration), which give ``elbo(x, labels)``; the conditional
bound where the model is conditional and the data labelled. Its per-example values are -ELBO(x_i); its
protocol the evaluation subset's and the Monte Carlo draws per example. Registered by the likelihood
metrics' plugin (:mod:`harness_plugins.metrics.likelihood`).
"""

from __future__ import annotations

import math
from typing import Optional

from harness import Capability, Measurement, MetricContext, MetricSpec, Output, Role, Tolerance

LN2 = math.log(2.0)
FAMILY = "vae"  # the model family whose models give elbo(x)
SAMPLES = 1  # Monte Carlo draws of the reconstruction term per example: elbo(x)'s default


def elbo_nll(ctx: MetricContext) -> list:
    """-ELBO on the evaluation split (the profile's eval_examples of the test split), an upper bound on
    the NLL."""
    model = ctx.model
    if not hasattr(model, "elbo"):
        raise TypeError(f"{type(model).__name__} has no elbo(x) method")
    test = ctx.evaluation_split()
    x, y = test.x, test.y
    conditional = bool(getattr(model, "conditional", False)) and y is not None
    values = model.elbo(x, y if conditional else None).double()
    nll = -values
    stderr = float(nll.std(unbiased=True) / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    details = {"conditional": conditional, "samples": SAMPLES}
    if ctx.dataset.spec.is_image:
        details["bpd"] = float(nll.mean()) / (ctx.dataset.spec.dim * LN2)
    protocol = {**ctx.evaluation_protocol(), "elbo_samples": SAMPLES, "conditional": conditional}
    return [Measurement("elbo_nll", float(nll.mean()), estimator="bound", stderr=stderr, n=len(nll),
                        details=details, protocol=protocol, per_example=ctx.per_example(nll))]


def _vae_only(model_spec, dataset_spec) -> Optional[str]:
    if model_spec.family != FAMILY:
        return f"elbo_nll is reported for the vae family; {model_spec.name} is {model_spec.family}"
    return None


def metric_spec() -> MetricSpec:
    """The declaration of ``elbo_nll``."""
    return MetricSpec(
        name="elbo_nll",
        compute=elbo_nll,
        outputs=[Output("elbo_nll", unit="nats", higher_is_better=False, role=Role.LIKELIHOOD,
                        tolerance=Tolerance(relative=0.02, absolute=0.05), order=40,
                        description="-ELBO per example (nats), an upper bound on the NLL; looser than the IWAE "
                                    "bound that nll reports",
                        protocol=("split", "examples", "subset_seed", "elbo_samples"))],
        requires=[Capability.LOG_LIKELIHOOD],
        applies=_vae_only,
        description="-ELBO on the test split (nats): the looser of the two VAE bounds; nll shows the IWAE bound.",
    )
