"""`streamlane dashboards push` pointed at the wrong address: one line saying what answered."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streamlane.ports import free_port
from tests.helpers import the_error_line


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """A plain static web server (not Grafana) on a free loopback port, stopped afterwards."""

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def push(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlane", "dashboards", "push", "--url", url,
         "--token", "t", "--pg-password", "p"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_web_server_that_is_not_grafana_is_reported_in_one_line(web_server: str) -> None:
    out = push(web_server)
    assert out.returncode == 2, out.stderr
    # Its HTML error page is reduced to its text, on the one line.
    error = the_error_line(out.stderr)
    assert error.startswith(
        f"streamlane: error: Grafana at {web_server} refused the push: HTTP 501: "
    )
    assert "Unsupported method ('POST')" in error and "<" not in error, error
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_nothing_listening_is_reported_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = push(url)
    assert out.returncode == 2, out.stderr
    assert the_error_line(out.stderr).startswith(
        f"streamlane: error: cannot reach Grafana at {url}"
    )
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
