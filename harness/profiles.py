"""Profiles: how much work a run does, as harness-wide knobs (seeds, time limit, evaluation examples,
sample batch).

Model hyperparameters per profile live in each ModelSpec; the sizes a metric needs per profile (a
sample count, timed repeats) in its MetricSpec (``sizes``, a :class:`harness.contracts.ProfileSizes`)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.contracts import UserError


@dataclass(frozen=True)
class Profile:
    name: str
    job_timeout_s: float  # a job past this is stopped and recorded as failed
    eval_examples: int  # test examples used for likelihoods (0 = the whole test split)
    sample_batch: int  # samples (or test examples) per call when a metric draws or scores in batches
    description: str = ""
    # Seeds per (model, dataset) when the run does not say (--seeds): one trained model's test error leaves
    # out the variation between training runs, usually the larger, so a comparison needs several.
    seeds: int = 1


PROFILES = {
    "smoke": Profile("smoke", job_timeout_s=120, eval_examples=1000, sample_batch=256,
                     description="CI: seconds a job, checks that everything runs"),
    "quick": Profile("quick", job_timeout_s=600, eval_examples=0, sample_batch=1024,
                     description="default: a laptop CPU, 3 seeds per model and dataset", seeds=3),
    "full": Profile("full", job_timeout_s=7200, eval_examples=0, sample_batch=4096,
                    description="GPU scale, 3 seeds per model and dataset", seeds=3),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UserError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
