"""Launchers that start a Ray cluster inside a batch scheduler's allocation and run the harness on it.

``harness cluster slurm`` writes the batch script (:mod:`harness.cluster.slurm`); the ports Ray opens
come from :mod:`harness.cluster.ports`. See docs/cluster.md.
"""

from harness.cluster.ports import PortRange, parse_port_range
from harness.cluster.slurm import SlurmJob, sbatch_script

__all__ = ["PortRange", "SlurmJob", "parse_port_range", "sbatch_script"]
