"""Profiles: how much work a job does. Model hyperparameters per profile live in each ModelSpec;
these are the harness-wide knobs (time limits, evaluation sizes, sample counts)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.contracts import UserError


@dataclass(frozen=True)
class Profile:
    name: str
    job_timeout_s: float  # a job past this is stopped and recorded as failed
    eval_examples: int  # test examples used for likelihoods (0 = the whole test split)
    sample_batch: int  # batch size for sampling throughput
    timing_repeats: int  # timed repeats after warm-up for speed metrics
    fidelity_samples: int  # samples per model (and reference) for FID/KID/PR
    description: str = ""


PROFILES = {
    "smoke": Profile("smoke", job_timeout_s=120, eval_examples=1000, sample_batch=256, timing_repeats=3,
                     fidelity_samples=500, description="CI: seconds a job, checks that everything runs"),
    "quick": Profile("quick", job_timeout_s=600, eval_examples=0, sample_batch=1024, timing_repeats=5,
                     fidelity_samples=2000, description="default: a laptop CPU, about 10 minutes for run --all"),
    "full": Profile("full", job_timeout_s=7200, eval_examples=0, sample_batch=4096, timing_repeats=20,
                    fidelity_samples=10000, description="GPU scale"),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UserError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
