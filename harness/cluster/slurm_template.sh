#!/bin/bash
@SBATCH_LINES@
#
# Written by `python -m harness cluster slurm`; submit it with `sbatch THIS_FILE`. It starts a Ray
# cluster on the nodes of the allocation (the head on the first, a worker on each other), runs the
# harness on the first node against it, and stops Ray when the run ends, however it ends.
# The command it was written from: @LAUNCHER@

log() { printf '%s %s\n' "$(date '+%H:%M:%S')" "$*"; }

cd @WORKDIR@ || { log "cannot enter the working directory"; exit 2; }

# This job's Ray cluster accepts only processes that know this token; srun passes the environment to
# every node. (Ray versions without token authentication ignore both variables.)
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(@PYTHON@ -c 'import secrets; print(secrets.token_hex(32))') || exit 2
export RAY_AUTH_TOKEN

mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
if (( ${#nodes[@]} == 0 )); then
    log "no nodes in SLURM_JOB_NODELIST: submit this script with sbatch"
    exit 2
fi
head_node=${nodes[0]}

# The head's address as the other nodes see it: its IPv4 address where the node has several.
addresses=($(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address))
head_ip=${addresses[0]}
for address in "${addresses[@]}"; do
    if [[ $address == *.* ]]; then head_ip=$address; break; fi
done
if [[ -z $head_ip ]]; then
    log "could not find the IP address of $head_node"
    exit 1
fi
ray_address=$head_ip:@PORT@
ray_temp_dir=/tmp/ray-$SLURM_JOB_ID  # a Ray directory of this job's own on each node

# Stopping a step (srun) ends `ray start --block` on its node, and with it that node's Ray processes.
ray_steps=()
stop_ray() {
    trap - EXIT
    (( ${#ray_steps[@]} )) || return 0
    log "stopping Ray"
    kill -TERM "${ray_steps[@]}" 2>/dev/null
    for _ in $(seq 30); do
        [[ -z $(jobs -rp) ]] && break
        sleep 1
    done
    kill -KILL $(jobs -rp) 2>/dev/null
    wait
}
trap stop_ray EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Each Ray node is one srun step holding the node's CPUs (given again: srun in a batch script does
# not inherit --cpus-per-task from sbatch on every Slurm version).
log "starting the Ray head on $head_node ($ray_address)"
srun --nodes=1 --ntasks=1 --cpus-per-task=@CPUS@ -w "$head_node" \
    @RAY@ start --head --block --node-ip-address="$head_ip" --temp-dir="$ray_temp_dir" \
    @HEAD_OPTIONS@ &
ray_steps+=($!)

# The head listens on its port once it is up; the workers join it then.
deadline=$((SECONDS + @START_TIMEOUT@))
until (exec 3<>"/dev/tcp/$head_ip/@PORT@") 2>/dev/null; do
    if ! kill -0 "${ray_steps[0]}" 2>/dev/null; then
        log "the Ray head did not start (its output is above)"
        exit 1
    fi
    if (( SECONDS > deadline )); then
        log "the Ray head did not open port @PORT@ within @START_TIMEOUT@ s"
        exit 1
    fi
    sleep 1
done

for node in "${nodes[@]:1}"; do
    log "starting a Ray worker on $node"
    srun --nodes=1 --ntasks=1 --cpus-per-task=@CPUS@ -w "$node" \
        @RAY@ start --block --address="$ray_address" --temp-dir="$ray_temp_dir" \
        @WORKER_OPTIONS@ &
    ray_steps+=($!)
done

# How many nodes are alive in the cluster once all have joined, or when the time is up.
alive=$(@PYTHON@ - "$ray_address" "${#nodes[@]}" $((deadline - SECONDS)) <<'PYTHON' | tail -n 1
import logging
import sys
import time

import ray

address, wanted, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
alive = 0
while True:
    try:
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        alive = sum(1 for node in ray.nodes() if node["Alive"])
    except Exception as exc:
        print(f"waiting for the Ray cluster: {type(exc).__name__}: {exc}", file=sys.stderr)
    if alive >= wanted or time.monotonic() > deadline:
        break
    time.sleep(2)
print(alive)
PYTHON
)
if [[ ! $alive =~ ^[0-9]+$ ]] || (( alive == 0 )); then
    log "the Ray cluster at $ray_address did not come up"
    exit 1
fi
if (( alive < ${#nodes[@]} )); then
    log "warning: $alive of ${#nodes[@]} nodes joined the Ray cluster; running on those (others may join later)"
else
    log "the Ray cluster is up: $alive nodes"
fi

log "running the harness against $ray_address"
@PYTHON@ -m harness run @RUN_ARGS@ --executor ray --ray-address "$ray_address"
status=$?
log "the run ended with exit code $status"
exit $status
