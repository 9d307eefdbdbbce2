"""Ray's ports on a shared cluster: the head's port, and every other port Ray opens, from one range.

Ray opens a port for the head (``--port``, where the other nodes and the run connect), a few on each
node for its services (node manager, object manager, agents, metrics), one for the Ray client server on
the head, and one per worker process. Left to Ray these are fixed defaults or random ports, which
collide when two jobs share a node and cannot be opened in a firewall. Given a range ``LOW-HIGH``,
the services take its first ports, one each, and the workers the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from harness.contracts import UserError

# The services of every node, in the order they take the range's first ports.
NODE_SERVICES = ("node-manager-port", "object-manager-port", "runtime-env-agent-port",
                 "dashboard-agent-grpc-port", "dashboard-agent-listen-port", "metrics-export-port")
HEAD_SERVICES = ("ray-client-server-port",)  # the head's alone, after the node services
LOWEST, HIGHEST = 1024, 65535  # ports below 1024 need root


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    def __contains__(self, port: int) -> bool:
        return self.low <= port <= self.high

    @property
    def first_worker_port(self) -> int:
        return self.low + len(NODE_SERVICES) + len(HEAD_SERVICES)

    @property
    def worker_ports(self) -> int:
        return self.high - self.first_worker_port + 1


def parse_port_range(text: str) -> PortRange:
    """``"20000-20100"`` -> PortRange(20000, 20100); anything else is a UserError."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match:
        raise UserError(f"--port-range {text!r} is not LOW-HIGH (e.g. --port-range 20000-20100)")
    low, high = int(match[1]), int(match[2])
    if not LOWEST <= low < high <= HIGHEST:
        raise UserError(f"--port-range {text}: need {LOWEST} <= LOW < HIGH <= {HIGHEST}")
    return PortRange(low, high)


def check_port(flag: str, port: int) -> None:
    if not LOWEST <= port <= HIGHEST:
        raise UserError(f"{flag} {port} is not a port from {LOWEST} to {HIGHEST}")


def minimum_worker_ports(cpus_per_node: int) -> int:
    """Ray gives each worker process a port of its own and keeps idle workers beside the busy ones, so a
    node needs about two worker ports per CPU; two more cover the drivers (the run, the start check)."""
    return 2 * cpus_per_node + 2


def ray_port_options(port: int, port_range: Optional[PortRange], dashboard_port: Optional[int],
                     cpus_per_node: int) -> tuple[list, list]:
    """(options of ``ray start`` on the head alone, options on every node) for these ports.

    Without a range Ray chooses the node ports itself. Without a dashboard port the dashboard is off
    (the head then opens no dashboard port)."""
    check_port("--port", port)
    head = [f"--port={port}", "--include-dashboard=false"]
    if dashboard_port is not None:
        check_port("--dashboard-port", dashboard_port)
        if dashboard_port == port:
            raise UserError(f"--dashboard-port and --port are both {port}; give them different ports")
        head[1:] = ["--include-dashboard=true", f"--dashboard-port={dashboard_port}"]
    if port_range is None:
        return head, []
    for flag, value in (("--port", port), ("--dashboard-port", dashboard_port)):
        if value is not None and value in port_range:
            raise UserError(f"{flag} {value} is inside --port-range {port_range}, whose ports Ray's services "
                            "and workers take; choose a port outside it")
    needed = minimum_worker_ports(cpus_per_node)
    if port_range.worker_ports < needed:
        services = len(NODE_SERVICES) + len(HEAD_SERVICES)
        raise UserError(f"--port-range {port_range} is too small for {cpus_per_node} CPUs a node: it needs "
                        f"{services} ports for Ray's services and at least {needed} for its workers "
                        f"(e.g. --port-range {port_range.low}-{port_range.low + services + needed - 1})")
    node = [f"--{name}={port_range.low + i}" for i, name in enumerate(NODE_SERVICES)]
    node += [f"--min-worker-port={port_range.first_worker_port}", f"--max-worker-port={port_range.high}"]
    head += [f"--{name}={port_range.low + len(NODE_SERVICES) + i}" for i, name in enumerate(HEAD_SERVICES)]
    return head, node
