"""The report's environment block: what a run records about where it ran, and how stored runs display."""

import json
import platform
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.report.environment import run_rows
from harness.runner import environment_info


def cpuinfo_model_name():
    """The first ``model name`` of /proc/cpuinfo, read here independently of harness; None elsewhere."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return None
    match = re.search(r"^model name\s*:\s*(.+)$", path.read_text(), re.MULTILINE)
    return " ".join(match.group(1).split()) if match else None


def test_a_run_records_the_processor_model_not_its_architecture():
    info = environment_info(torch.device("cpu"), {})
    expected = cpuinfo_model_name()
    if expected is None:
        pytest.skip("no model name in /proc/cpuinfo on this machine")
    assert info["processor"] == expected and info["processor"] != platform.machine()


def run(info):
    return {"run_id": "r1", "profile": "smoke", "started": 0.0, "finished": 65.0, "info": info}


def test_stored_runs_show_the_processor_they_recorded_or_their_fingerprints():
    (bare,) = run_rows([run({"processor": "x86_64", "threads": 2})])
    assert bare["processor"] == "x86_64" and bare["threads"] == "2" and bare["wall time"] == "1 min 05 s"
    (named,) = run_rows([run({"processor": "x86_64", "machine": {"id": "m1", "fingerprint":
                                                                 {"processor": "AMD EPYC 7B13"}}})])
    assert named["processor"] == "AMD EPYC 7B13" and named["machine id"] == "m1"
    (recorded,) = run_rows([run({"processor": "Intel(R) Xeon(R) CPU @ 2.20GHz"})])
    assert recorded["processor"] == "Intel(R) Xeon(R) CPU @ 2.20GHz"


def test_the_environment_lists_the_machines_and_nodes_jobs_ran_on():
    fp = {"processor": "Node CPU", "physical_cores": 8, "usable_cpus": 8, "torch_threads": 1, "device": "cpu"}
    coordinator = {"id": "coord1", "fingerprint": {"processor": "Laptop CPU", "device": "cpu"}}

    def job(key, details, status="ok"):
        return {"run_id": "r1", "key": key, "status": status, "job_details": json.dumps(details)}

    node = lambda nid, host: {"id": nid, "host": host, "fingerprint": fp, "calibration": {}}  # noqa: E731
    rows = pd.DataFrame([job("a", {"machine": "node1", "node": node("aaaaaaaa11", "n1")}),
                         job("a", {"machine": "node1", "node": node("aaaaaaaa11", "n1")}),  # a second measurement
                         job("b", {"machine": "node1", "node": node("bbbbbbbb22", "n2")}),
                         job("c", {"machine": "node1", "node": node("bbbbbbbb22", "n2")}),
                         job("d", {"machine": None}, "failed"),  # its node was lost
                         job("e", {"machine": "coord1"}),  # ran on the coordinator
                         job("f", {}, "skipped")])
    (row,) = run_rows([{"run_id": "r1", "started": 0.0, "finished": 1.0, "info": {"machine": coordinator}}], rows)
    assert row["machines"] == ("`coord1` (Laptop CPU, ? cores / ? CPUs, ? threads, cpu, torch ?): 1 job; "
                               "`node1` (Node CPU, 8 cores / 8 CPUs, 1 threads, cpu, torch ?): 3 jobs; not known: 1 job")
    assert row["nodes"] == "n1 (Ray node aaaaaaaa): 1 job; n2 (Ray node bbbbbbbb): 2 jobs"
    assert row["jobs"] == "1 failed, 4 ok, 1 skipped"
