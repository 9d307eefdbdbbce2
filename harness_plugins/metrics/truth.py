"""Truth-based score of a model's samples (sample_xent_gap), for datasets with a true log-density.

Truth-based score of a model's samples, for datasets that give their true log-density and entropy
(the 2-D toys): ``sample_xent_gap``.

What it measures. The cross-entropy of the model's samples under the true density minus the
entropy, E_{x ~ model}[-log p_true(x)] - H(p_true), estimated by the mean over the job's n model
samples (the samples the fidelity metrics use, and as many: :mod:`harness_plugins.metrics.job_samples`). True draws score 0 in expectation; a model that puts mass
where the data has little or none scores high, however well it covers the data: this is the
direction of error the likelihood (``nll``, ``nll_gap``: the data scored under the model) cannot
see, and that FID on raw 2-D coordinates, which compares only means and covariances, misses (a
single Gaussian and 8gaussians are 1.4e-4 apart in population FID).

The cap. Where the truth is zero (checkerboard's empty squares) -log p_true is infinite, and far
from the data it is huge, so one stray sample would decide the mean. Each sample therefore counts at
most ``CAP_NATS`` = 25 nats above the entropy (a density e^-25 ~ 1.4e-11 times the typical one):
the value is the cross-entropy under max(p_true, e^-(H + 25)), a finite score that still grows
with every sample off the data (1% of the samples off the support add about 0.25 nats).
Details give the cap and how many samples reached it (``capped``). Standard error: the standard
deviation of the capped values over sqrt(n), and the entropy's error, in quadrature.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from harness import Capability, Measurement, MetricContext, MetricSpec, Output, Tolerance, hookimpl
from harness_plugins.metrics.job_samples import SAMPLE_COUNT, counted, job_samples

CAP_NATS = 25.0  # a sample counts at most this far above the entropy

# Tolerance (the regression gate's floor): at smoke's 500 samples the standard error of a good model
# is about 0.05 nats; 0.1 nats, or 5% for models far off (values of several nats), is above that seed
# noise and below a real regression (0.4% more samples off the support already adds 0.1 nats).
OUTPUT = Output(
    "sample_xent_gap", "nats", higher_is_better=False, estimator="statistic", order=35,
    tolerance=Tolerance(relative=0.05, absolute=0.1), protocol=("samples", "cap_nats"),
    description="mean -log p_true of model samples minus the entropy (each capped 25 nats above it): "
                "0 for samples like the data, high for mass where the data has none")


def sample_xent_gap(log_p_true: torch.Tensor, entropy: float, entropy_stderr: float = 0.0) -> dict:
    """The capped cross-entropy gap of samples whose true log-densities are ``log_p_true`` (any
    shape, -inf allowed; NaN is an error): value, stderr, cap and the number of capped samples."""
    values = log_p_true.detach().double().reshape(-1).cpu()
    if torch.isnan(values).any():
        raise ValueError("the dataset's log_density gave NaN at some of the model's samples")
    cap = entropy + CAP_NATS
    nll = (-values).clamp(max=cap)  # -inf log-density (outside the support) becomes the cap
    n = int(nll.shape[0])
    across = float(nll.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    return {"value": float(nll.mean()) - entropy, "stderr": math.hypot(across, entropy_stderr), "n": n,
            "cap": cap, "capped": int((-values >= cap).sum())}


def measure(ctx: MetricContext, n: int) -> list:
    """The capped cross-entropy gap of the job's ``n`` shared model samples."""
    spec = ctx.dataset.spec
    samples = job_samples(ctx, n)
    with torch.no_grad():
        log_p = spec.log_density(samples.reshape(n, *spec.event_shape))
    if tuple(log_p.shape) != (n,):
        raise ValueError(f"{spec.name}: log_density returned shape {tuple(log_p.shape)}, expected ({n},)")
    result = sample_xent_gap(log_p, spec.entropy, spec.entropy_stderr)
    details = {"samples": n, "entropy": spec.entropy, "cap": result["cap"], "capped": result["capped"],
               "capped_share": result["capped"] / n}
    return [Measurement("sample_xent_gap", result["value"], stderr=result["stderr"], n=n, details=details,
                        protocol={"samples": int(n), "cap_nats": CAP_NATS})]


def _has_truth(model_spec, dataset_spec) -> Optional[str]:
    if dataset_spec.log_density is None or dataset_spec.entropy is None:
        return f"{dataset_spec.name} gives no true log-density and entropy"
    return None


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(
        name="sample_xent_gap",
        compute=counted(measure),
        outputs=[OUTPUT],
        requires=[Capability.SAMPLE],
        applies=_has_truth,
        sizes=SAMPLE_COUNT,
        description="Cross-entropy of model samples under the true density minus its entropy (per sample capped "
                    "25 nats above it); catches mass put where the data has none.",
    ))
