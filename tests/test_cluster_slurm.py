"""`harness cluster slurm`: the sbatch script it writes is valid bash whose #SBATCH lines and `ray start`
lines carry the options (and only options `ray start` has), the run's arguments survive any quoting,
bad input is exit 2, and the script runs end to end on this machine with stand-ins for Slurm's `srun`
and `scontrol`: a real Ray head started by the script, a smoke run through the ray executor on it, Ray
stopped at the end."""

import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main

LOW = 30000  # the port range of the option tests: services LOW..LOW+6, workers LOW+7..HIGH
HIGH = 30100


def write_script(tmp_path, *options, run=("run", "--model", "gaussian", "--dataset", "8gaussians")) -> str:
    path = tmp_path / "job.sbatch"
    assert main(["cluster", "slurm", *options, "--output", str(path), "--", *run]) == 0
    return path.read_text()


def sbatch_lines(script: str) -> list:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def ray_start_options(script: str) -> dict:
    """"head" / "worker" -> the options of that `ray start` command (continued lines joined)."""
    joined = script.replace("\\\n", " ")
    found = {}
    for line in joined.splitlines():
        words = line.split()
        if "ray.scripts.scripts" in words and "start" in words:
            options = [w for w in words[words.index("start") + 1:] if w.startswith("--")]
            found["head" if "--head" in options else "worker"] = options
    return found


def require_ray():
    """Skip without Ray, except under CI, which must install it."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed; CI must install harness[ray] (see .ci/run)")
        pytest.skip("Ray is not installed: python -m pip install 'harness[ray]'")


def test_help_everywhere(capsys):
    for argv in (["cluster", "--help"], ["cluster", "slurm", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


def test_the_script_is_valid_bash_and_its_sbatch_and_ray_start_lines_carry_the_options(tmp_path, capsys):
    script = write_script(tmp_path, "--nodes", "3", "--cpus-per-node", "4", "--gpus-per-node", "2",
                          "--partition", "gpu", "--time", "02:00:00", "--account", "proj42", "--port", "7100",
                          "--port-range", f"{LOW}-{HIGH}", "--dashboard-port", "7200", "--sbatch-option=--mem=64G")
    assert "sbatch" in capsys.readouterr().out
    assert os.access(tmp_path / "job.sbatch", os.X_OK)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sbatch")]).returncode == 0
    assert sbatch_lines(script) == ["--job-name=harness", "--nodes=3", "--ntasks-per-node=1", "--cpus-per-task=4",
                                    "--gpus-per-node=2", "--partition=gpu", "--time=02:00:00", "--account=proj42",
                                    "--mem=64G"]
    starts = ray_start_options(script)
    node = {"--num-cpus=4", "--num-gpus=2", "--node-manager-port=30000", "--object-manager-port=30001",
            "--runtime-env-agent-port=30002", "--dashboard-agent-grpc-port=30003",
            "--dashboard-agent-listen-port=30004", "--metrics-export-port=30005",
            "--min-worker-port=30007", "--max-worker-port=30100"}
    head_only = {"--head", "--port=7100", "--ray-client-server-port=30006", "--include-dashboard=true",
                 "--dashboard-port=7200"}
    assert node | head_only <= set(starts["head"])
    assert node <= set(starts["worker"]) and not head_only & set(starts["worker"])
    assert "--address=\"$ray_address\"" in starts["worker"] and "ray_address=$head_ip:7100" in script
    sruns = [line for line in script.splitlines() if line.strip().startswith("srun") and "hostname" not in line]
    assert len(sruns) == 2 and all("--cpus-per-task=4" in line.split() for line in sruns)
    assert re.search(r"-m harness run --model gaussian --dataset 8gaussians --executor ray --ray-address "
                     r"\"\$ray_address\"", script)
    assert f"cd {shlex.quote(os.getcwd())} ||" in script  # the directory it was written in
    assert f"{sys.executable} -m ray.scripts.scripts start" in script


def test_gres_cpu_nodes_and_ray_chosen_ports(tmp_path):
    gres = write_script(tmp_path, "--nodes", "2", "--cpus-per-node", "8", "--gpus-per-node", "4", "--gres")
    assert "--gres=gpu:4" in sbatch_lines(gres) and not any("gpus-per-node" in line for line in sbatch_lines(gres))
    cpu = write_script(tmp_path, "--nodes", "1", "--cpus-per-node", "2")
    assert not any("gpu" in line for line in sbatch_lines(cpu))
    head = ray_start_options(cpu)["head"]
    assert "--num-gpus=0" in head and "--port=6379" in head and "--include-dashboard=false" in head
    assert not any(option.split("=")[0].endswith(("manager-port", "worker-port")) for option in head)


def test_every_ray_start_option_is_one_ray_start_has(tmp_path):
    require_ray()
    script = write_script(tmp_path, "--nodes", "2", "--cpus-per-node", "4", "--gpus-per-node", "1",
                          "--port-range", f"{LOW}-{HIGH}", "--dashboard-port", "7200")
    help_ = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--help"],
                           capture_output=True, text=True, check=True).stdout
    known = set(re.findall(r"(--[a-z][a-z-]+)", help_))
    used = {option.split("=")[0] for options in ray_start_options(script).values() for option in options}
    assert used - known == set() and len(used) > 15


def test_run_arguments_survive_quoting(tmp_path):
    tricky = ["run", "--model", "gaussian", "--out", "my results/it's \"here\"", "--set", "gmm.note=$HOME `id` \\ *",
              "--dataset", "two\nlines"]
    script = write_script(tmp_path, "--nodes", "1", "--cpus-per-node", "1", run=tricky)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sbatch")]).returncode == 0
    # Every line before the first command is the shebang, an #SBATCH line or a comment (the header repeats
    # the arguments, the newline included, without ending the comment).
    header = script[:script.index("log() {")].strip().splitlines()
    assert all(line.startswith("#") for line in header)
    quoted = re.search(r"-m harness run (.*) --executor ray --ray-address", script, re.S)[1]
    words = subprocess.run(["bash", "-c", f"printf '%s\\0' {quoted}"], capture_output=True, text=True,
                           check=True).stdout.split("\0")[:-1]
    assert words == tricky[1:]


@pytest.mark.parametrize("options,run,says", [
    (["--nodes", "0"], ["run", "--all"], "--nodes 0"),
    (["--cpus-per-node", "0"], ["run", "--all"], "--cpus-per-node 0"),
    (["--gpus-per-node", "-1"], ["run", "--all"], "--gpus-per-node -1"),
    (["--port-range", "30000"], ["run", "--all"], "LOW-HIGH"),
    (["--port-range", "30100-30000"], ["run", "--all"], "LOW < HIGH"),
    (["--port-range", "80-200"], ["run", "--all"], "1024"),
    (["--port-range", "30000-30010"], ["run", "--all"], "too small"),
    (["--port", "30050", "--port-range", "30000-30100"], ["run", "--all"], "inside --port-range"),
    (["--dashboard-port", "6379"], ["run", "--all"], "different ports"),
    (["--port", "70000"], ["run", "--all"], "not a port"),
    (["--time", "2 hours"], ["run", "--all"], "--time"),
    (["--partition", "gpu; rm -rf"], ["run", "--all"], "--partition"),
    (["--sbatch-option=--mem=1G\nrm -rf /"], ["run", "--all"], "--sbatch-option"),
    ([], [], "say what to run after --"),
    ([], ["report", "x"], "must be `run"),
    ([], ["run", "--all", "--executor", "ray"], "sets --executor"),
    ([], ["run", "--all", "--ray-address=h:1"], "sets --executor and --ray-address"),
    ([], ["run", "--all", "--exec", "local"], "leave them out"),
])
def test_bad_input_exits_2_saying_what_is_wrong(tmp_path, capsys, options, run, says):
    argv = ["cluster", "slurm", "--nodes", "2", "--cpus-per-node", "4", *options]  # a later flag wins
    assert main([*argv, "--output", str(tmp_path / "x.sbatch"), "--", *run]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "x.sbatch").exists()


def test_run_arguments_that_run_would_refuse_are_exit_2_before_the_queue(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["cluster", "slurm", "--nodes", "1", "--cpus-per-node", "1", "--", "run", "--profile", "nope"])
    assert exit_.value.code == 2 and "--profile" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the script, run here

SRUN = """#!/bin/bash
# srun on one machine: drops srun's options (-w NODE and the like) and runs the command here
while (( $# )); do
    case $1 in
        -w|-N|-n|-c) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
exec "$@"
"""
SCONTROL = """#!/bin/bash
# scontrol show hostnames A,B: one name a line
[[ $1 == show && $2 == hostnames ]] || exit 1
tr ',' '\\n' <<< "$3"
"""


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free now, below Linux's ephemeral range (32768-)."""
    for _ in range(200):
        low = random.randrange(20000, 32000 - count)
        try:
            for port in range(low, low + count):
                with socket.socket() as s:
                    s.bind(("", port))
        except OSError:
            continue
        return low
    pytest.skip("no block of free ports")


def processes_in(directory: str) -> list:
    """The processes whose command line names this directory or a path in it."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            if any(directory.encode() in word and (word.endswith(directory.encode()) or
                                                   directory.encode() + b"/" in word) for word in words):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_the_script_runs_a_smoke_run_on_a_ray_cluster_it_starts_and_stops(tmp_path, monkeypatch):
    require_ray()
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    low = free_ports(22)  # the head's port, then the range: 7 services, 14 worker ports (2 CPUs)
    monkeypatch.chdir(tmp_path)  # the script runs from the directory it was written in
    out = "res ults/it's"
    write_script(tmp_path, "--nodes", "1", "--cpus-per-node", "2", "--port", str(low),
                 "--port-range", f"{low + 1}-{low + 21}", "--start-timeout", "240",
                 run=("run", "--model", "gaussian", "gmm", "--dataset", "8gaussians", "--profile", "smoke",
                      "--metric", "nll", "--out", out))
    job_id = f"harness-test-{os.getpid()}"
    temp_dir = f"/tmp/ray-{job_id}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SLURM_"))}
    env.update(PATH=f"{shims}{os.pathsep}{env['PATH']}", SLURM_JOB_NODELIST="localhost", SLURM_JOB_ID=job_id,
               SLURM_JOB_NUM_NODES="1", OMP_NUM_THREADS="1")
    script = subprocess.Popen(["bash", "job.sbatch"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = script.communicate(timeout=400)
        assert script.returncode == 0, output[-4000:]
        assert "the Ray cluster is up: 1 nodes" in output and "the run ended with exit code 0" in output
        db = sqlite3.connect(tmp_path / out / "results.sqlite")
        jobs = dict(db.execute("SELECT model, status FROM jobs"))
        info = json.loads(db.execute("SELECT info FROM runs").fetchone()[0])
        db.close()
        assert jobs == {"gaussian": "ok", "gmm": "ok"}
        assert info["machine"]["fingerprint"]["executor"] == "ray"
        # Each job was a Ray task on the cluster the script started (its logs are in the job's Ray directory).
        logs = "".join(p.read_text(errors="replace") for p in Path(temp_dir).glob("session_*/logs/worker-*.out"))
        assert "gaussian/8gaussians" in logs and "gmm/8gaussians" in logs
        # And the script stopped that cluster: no process of it is left.
        deadline = time.monotonic() + 30
        while processes_in(temp_dir) and time.monotonic() < deadline:
            time.sleep(1)
        assert processes_in(temp_dir) == []
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGTERM)  # the script's trap stops Ray
            try:
                script.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(script.pid, signal.SIGKILL)
        for pid in processes_in(temp_dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
