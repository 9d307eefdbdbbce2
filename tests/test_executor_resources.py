"""``--resources KEY=VALUE``: custom Ray resources (a number) and node labels (a word) each job of a ray run
asks for, checked before anything is written; where the jobs landed is shown on a simulated cluster in
tests/test_cluster_nodes.py."""

from __future__ import annotations

import json
import re

import pytest

from harness.contracts import UserError
from harness.executors.resources import parse_resources, request_for


def test_resources_parse_into_amounts_and_labels():
    assert parse_resources(None) is None and parse_resources([]) is None
    assert parse_resources(["fast=1", "gpu_type=h100", "accelerator.v2=0.5", "example.com/zone=eu-1"]) == {
        "fast": 1.0, "gpu_type": "h100", "accelerator.v2": 0.5, "example.com/zone": "eu-1"}


@pytest.mark.parametrize("value, message", [
    ("fast", "--resources takes KEY=VALUE, not 'fast'"),
    ("=1", "--resources takes KEY=VALUE"),
    ("fast=", "--resources takes KEY=VALUE"),
    ("CPU=2", "'CPU' is a resource Ray manages itself; use --cpus-per-job"),
    ("GPU=1", "use --gpus-per-job"),
    ("memory=100", "'memory' is a resource Ray manages itself"),
    ("node:10.0.0.1=1", "a resource Ray manages itself"),
    ("fast=0", "the amount of a custom resource must be a number > 0"),
    ("fast=-1", "must be a number > 0"),
    ("fast=inf", "must be a number > 0"),
    ("gpu type=h100", "the key may hold letters, digits and _ . - / only"),
    ("gpu_type=h 100", "a label value is a word"),
    ("gpu_type=h100-", "a label value is a word"),
    ("gpu_type_=h100", "a label key is a word"),
    ("ray.io/node-id=abc", "(not ray.io/)"),
])
def test_a_bad_resource_says_what_is_wrong(value, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_resources([value])


def test_a_resource_named_twice_is_refused():
    with pytest.raises(UserError, match="names 'fast' twice"):
        parse_resources(["fast=1", "fast=2"])


def test_a_request_carries_the_custom_resources_and_labels():
    from harness import DataKind, ModelSpec
    from tests.fake_plugins.fakes import StandardNormal

    spec = ModelSpec(name="m", family="fake", factory=StandardNormal, data_kinds=[DataKind.CONTINUOUS])
    request = request_for(spec, "smoke", "cpu", resources={"gpu_type": "h100", "fast": 1.0, "b": 2.0})
    assert request.custom == (("b", 2.0), ("fast", 1.0)) and request.labels == (("gpu_type", "h100"),)
    assert request.describe() == "1 CPUs, 0 GPUs, b=2, fast=1 on nodes labelled gpu_type=h100"
    assert hash(request) == hash(request_for(spec, "smoke", "cpu", resources={"fast": 1.0, "b": 2.0,
                                                                             "gpu_type": "h100"}))


def test_the_ray_executor_resumes_with_its_resources():
    from harness.executors.ray_cluster import RayExecutor

    flags = RayExecutor(resources={"fast": 1.0, "gpu_type": "h100"}, retries=1).resume_flags()
    assert flags == ["--executor", "ray", "--retries", "1", "--resources", "fast=1", "--resources", "gpu_type=h100"]


@pytest.mark.parametrize("flags, message", [
    (["--executor", "ray", "--resources", "gpu_type"], "--resources takes KEY=VALUE, not 'gpu_type'"),
    (["--executor", "ray", "--resources", "CPU=4"], "use --cpus-per-job"),
    (["--executor", "process", "--resources", "fast=1"],
     "--resources only applies to executors that pin jobs to nodes by custom resources or labels: ray "
     "(not --executor process)"),
])
def test_resources_that_do_not_fit_exit_2_before_anything_is_written(flags, message, tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "run"
    assert main(["run", "--model", "gaussian", "--dataset", "8gaussians", "--profile", "smoke", "--out", str(out),
                 "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_list_executors_says_ray_takes_resources(capsys):
    from harness.cli import main

    assert main(["list", "executors", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    ray = next(e for e in (listed if isinstance(listed, list) else listed["executors"]) if e["name"] == "ray")
    assert "--resources" in ray["accepts"]
