"""A synthetic metric history written straight into the documented file format (as another tool would
write it): 30 commits, two datasets, two models, a quality metric of each direction and a speed figure
on one machine, seed noise everywhere, and two planted events:

- a step: ``alpha``'s ``loss`` on ``toy-a`` (lower is better) rises by ``STEP`` at commit ``STEP_AT``;
- a protocol change: ``beta``'s ``score`` on ``toy-b`` moves to another profile, and level, at commit
  ``PROTOCOL_AT`` (a new curve, not a step).
"""

from __future__ import annotations

import hashlib

import numpy as np

from harness.history.format import RecordSet, append

COMMITS = 30
STEP_AT, STEP = 17, 0.5
PROTOCOL_AT = 20
MACHINE = "machine-one"
SEEDS = 3

# (dataset, model, metric) -> (base level, seed sd, higher_is_better, unit, role, scaling, tolerance)
PLAN = {
    ("toy-a", "alpha", "loss"): (2.0, 0.05, False, "nats", "likelihood", "none", {"relative": 0.02, "absolute": 0.05}),
    ("toy-a", "beta", "loss"): (2.4, 0.05, False, "nats", "likelihood", "none", {"relative": 0.02, "absolute": 0.05}),
    ("toy-a", "alpha", "score"): (0.8, 0.02, True, "score", "sample_quality", "none", {"absolute": 0.05}),
    ("toy-b", "alpha", "score"): (0.7, 0.02, True, "score", "sample_quality", "none", {"absolute": 0.05}),
    ("toy-b", "beta", "score"): (0.6, 0.02, True, "score", "sample_quality", "none", {"absolute": 0.05}),
    ("toy-b", "alpha", "rate"): (1000.0, 50.0, True, "samples/s", "speed", "rate", {"relative": 0.5, "ratio": True}),
}


def sha(i: int) -> str:
    return hashlib.sha1(f"commit {i}".encode()).hexdigest()


def record(dataset, model, metric, values, plan, profile="smoke") -> dict:
    _, _, hib, unit, role, scaling, tol = plan
    speed = role == "speed"
    protocol = {"profile": profile, "identity": metric, "variant": None, "dataset_version": "v1"}
    protocol.update({"device": "cpu", "torch_threads": 1} if speed else {"sample_count": 500})
    return {"dataset": dataset, "model": model, "metric": metric, "id": metric, "mean": float(np.mean(values)),
            "stderr": float(np.std(values, ddof=1) / np.sqrt(len(values))), "n_seeds": len(values),
            "seeds": list(range(len(values))), "unit": unit, "higher_is_better": hib, "role": role,
            "scaling": scaling if speed else "none", "estimator": "measured" if speed else "exact",
            "tolerance": {"relative": 0.0, "absolute": 0.0, "ratio": False, **tol}, "machine": MACHINE,
            "protocol": protocol}


def record_set(i: int, rng) -> RecordSet:
    records = []
    for (dataset, model, metric), plan in PLAN.items():
        level, sd = plan[0], plan[1]
        profile = "smoke"
        if (dataset, model, metric) == ("toy-a", "alpha", "loss") and i >= STEP_AT:
            level += STEP
        if (dataset, model, metric) == ("toy-b", "beta", "score") and i >= PROTOCOL_AT:
            level, profile = level + 0.2, "quick"
        records.append(record(dataset, model, metric, level + sd * rng.standard_normal(SEEDS), plan, profile))
    day = f"2026-11-{1 + i // 2:02d}T{10 + i % 2}:00:00+00:00"
    return RecordSet(commit=sha(i), commit_date=day, subject=f"commit number {i}", date=day, added=day,
                     source=f"/runs/{i}", runs=[f"run-{i}"], records=records,
                     machines={MACHINE: {"description": "a test machine", "fingerprint": {"device": "cpu"},
                                         "calibration": None}},
                     environment={"harness": "0.2.0"})


def write_history(path, seed: int = 0) -> list:
    """Append the 30 record sets to ``path`` (in a shuffled order: the curve order comes from the commit
    dates); the commits' hashes, oldest first."""
    rng = np.random.default_rng(seed)
    sets = [record_set(i, rng) for i in range(COMMITS)]
    for j in np.random.default_rng(seed + 1).permutation(COMMITS):
        assert append(path, sets[j])
    return [sha(i) for i in range(COMMITS)]
