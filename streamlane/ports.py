"""Free TCP ports for processes that are told their port before they listen on it.

`streamlane run`, the benchmark and the tests choose ports for the embedded broker, the
metrics endpoints and a cluster's processes, and hand them to processes that listen on
them a second or two later. A port the kernel hands out for port 0 is in its ephemeral
range, where in that second any other socket bound to port 0 or any outgoing connection
can be given the same port, and the process told to listen on it fails with "Address
already in use". Ports below the ephemeral range are never handed out that way, so a
port chosen there and free now stays free until it is listened on, unless another
process asks for it by number.

A flow cluster's processes take their ports from a part of that range of their own
(`cluster_port`). A cluster process takes any connection to its address for a peer, and
stops when it is not one; and Kafka clients keep knocking on the port of a broker that has
gone (the tests' brokers come and go, as do the embedded brokers of earlier runs): one
such client found a cluster process on its old broker's port, and that process stopped
with "received incorrect timely handshake". Brokers and HTTP endpoints never get a port
from the cluster part. No port is chosen twice by one process, either: a process that
chooses several before any is listened on (`streamlane run`) would otherwise hand one
out twice now and then.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 20000
"""Ports below this are left alone: many servers (PostgreSQL, Kafka, our own endpoints)
default to ports there, and one may start later on the machine."""
ATTEMPTS = 200


def _ephemeral_start() -> int | None:
    """The first port of the kernel's ephemeral range, or None where it cannot be read
    (anything but Linux)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


_chosen: set[int] = set()
"""Every port this process has chosen."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing is bound to now, chosen at random below the
    kernel's ephemeral range (from 20000, below the part `cluster_port` chooses from), so
    that no socket bound to port 0 and no outgoing connection can take it before the
    process it is meant for listens on it. Never one this process chose before. Where that
    range cannot be read or leaves too few ports below it, or none of the ports tried is
    free, the kernel chooses one, as for port 0."""
    return _choose(host, cluster=False)


def cluster_port(host: str = "127.0.0.1") -> int:
    """As `free_port`, for a process of a flow cluster to listen on for its peers: from the
    upper half of the ports below the ephemeral range, which no broker or HTTP endpoint of
    ours is given, so no client of theirs knocks on it (see the module docstring)."""
    return _choose(host, cluster=True)


def _choose(host: str, cluster: bool) -> int:
    start = _ephemeral_start()
    if start is not None and start - LOWEST_PORT >= 2 * ATTEMPTS:
        middle = (LOWEST_PORT + start) // 2
        part = range(middle, start) if cluster else range(LOWEST_PORT, middle)
        for port in random.sample(part, ATTEMPTS):
            if port not in _chosen and _bindable(host, port):
                _chosen.add(port)
                return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _chosen.add(port)
    return port
