"""Re-measuring saved models against training them: ``evaluate D --metric nll`` after
``run --model gmm vae --dataset 8gaussians --profile smoke --out D``, both as the command a user types,
back to back on one machine. The ratio of wall times is recorded (``extra_info``) and must stay well
below 1: evaluate loads, it does not fit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd

MAX_RATIO = 0.5  # evaluate of the nll alone must take well under the run that trained and measured the models


def _cli(*args):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", *args, "--no-progress"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def test_evaluate_is_a_fraction_of_the_run(benchmark, tmp_path):
    run_dir, eval_dir = tmp_path / "D", tmp_path / "E"
    run_seconds = _cli("run", "--model", "gmm", "vae", "--dataset", "8gaussians", "--profile", "smoke",
                       "--out", str(run_dir))
    timings = []
    benchmark.pedantic(lambda: timings.append(_cli("evaluate", str(run_dir), "--metric", "nll", "--out",
                                                   str(eval_dir))), rounds=1, iterations=1)
    ratio = timings[0] / run_seconds
    benchmark.extra_info.update({"run_seconds": round(run_seconds, 2), "evaluate_seconds": round(timings[0], 2),
                                 "ratio": round(ratio, 3)})
    before = pd.read_csv(run_dir / "results.csv").query("metric == 'nll'")
    after = pd.read_csv(eval_dir / "results.csv").query("metric == 'nll'")
    assert sorted(before["value"]) == sorted(after["value"])
    assert ratio < MAX_RATIO, f"evaluate took {timings[0]:.1f} s, the run {run_seconds:.1f} s"
