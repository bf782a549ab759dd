"""Ports chosen for a process to listen on later are ones the kernel never hands out."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streamlane import ports
from streamlane.ports import free_port


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
        fake_range = tmp_path / "ip_local_port_range"
        fake_range.write_text(f"{first + 2}\t60999\n")
        monkeypatch.setattr(ports, "EPHEMERAL_RANGE", fake_range)
        assert free_port() == free
        with socket.socket() as also_taken:
            also_taken.bind(("127.0.0.1", free))
            port = free_port()
            assert port not in (first, free)
            assert ports._bindable("127.0.0.1", port)
