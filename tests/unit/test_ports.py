"""Ports chosen for a process to listen on later are ones the kernel never hands out."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streamlane import ports
from streamlane.ports import cluster_port, free_port


def test_a_chosen_port_is_below_the_ephemeral_range_and_can_be_listened_on() -> None:
    start = int(ports.EPHEMERAL_RANGE.read_text().split()[0])
    port = free_port()
    assert ports.LOWEST_PORT <= port < start
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()


def test_sockets_bound_to_port_0_are_never_given_a_chosen_port() -> None:
    chosen = {free_port() for _ in range(20)}
    given = []
    try:
        for _ in range(1000):
            sock = socket.socket()
            given.append(sock)
            sock.bind(("127.0.0.1", 0))
        assert not chosen & {s.getsockname()[1] for s in given}
    finally:
        for sock in given:
            sock.close()


def test_cluster_ports_are_never_ports_chosen_for_anything_else() -> None:
    """A Kafka client or a metrics reader knocking on the port of a broker or an endpoint
    gone since must never reach a cluster process (which stops on a stranger)."""
    start = int(ports.EPHEMERAL_RANGE.read_text().split()[0])
    middle = (ports.LOWEST_PORT + start) // 2
    others = [free_port() for _ in range(200)]
    peers = [cluster_port() for _ in range(200)]
    assert all(ports.LOWEST_PORT <= port < middle for port in others)
    assert all(middle <= port < start for port in peers)


def test_a_process_never_chooses_a_port_twice() -> None:
    """`streamlane run` chooses its children's ports before any of them listens."""
    chosen = [free_port() for _ in range(500)] + [cluster_port() for _ in range(500)]
    assert len(set(chosen)) == len(chosen)


def test_a_port_in_use_is_not_chosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With only a few ports below the ephemeral range, all of them taken but one, the one
    left is chosen; with none left, the kernel chooses."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        first = taken.getsockname()[1]
        free = first + 1
        if not ports._bindable("127.0.0.1", free):
            pytest.skip(f"port {free} is in use on this machine")
        monkeypatch.setattr(ports, "LOWEST_PORT", first)
        monkeypatch.setattr(ports, "ATTEMPTS", 2)
        monkeypatch.setattr(ports, "_chosen", set())
        fake_range = tmp_path / "ip_local_port_range"
        fake_range.write_text(f"{first + 4}\t60999\n")  # free_port's part: first, free
        monkeypatch.setattr(ports, "EPHEMERAL_RANGE", fake_range)
        assert free_port() == free
        with socket.socket() as also_taken:
            also_taken.bind(("127.0.0.1", free))
            port = free_port()
            assert port not in (first, free)
            assert ports._bindable("127.0.0.1", port)
