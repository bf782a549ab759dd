"""A real Prometheus scrapes the warehouse process's metrics endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import duckdb
import psycopg

from streamlane.ports import free_port
from streamlane.query import endpoint_file
from tests.helpers import Processes, wait_until


def _prometheus_value(port: int, query: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            result = json.loads(response.read())["data"]["result"]
    except OSError:
        return None
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_query_metrics(tmp_path: Path, processes: Processes) -> None:
    warehouse = tmp_path / "w.duckdb"
    duckdb.connect(str(warehouse)).execute("CREATE TABLE t AS SELECT 1 AS x").close()
    metrics_port, prometheus_port = free_port(), free_port()
    os.environ["STREAMLANE_PG_PASSWORD"] = "scraped"
    try:
        processes.start(
            "serve", "serve", "--warehouse", str(warehouse), "--pg-port", "0", "--quack-port", "0",
            "--metrics-port", str(metrics_port),
        )  # fmt: skip
    finally:
        del os.environ["STREAMLANE_PG_PASSWORD"]
    wait_until(endpoint_file(warehouse).exists, 60, "the warehouse endpoint")
    pg_port = json.loads(endpoint_file(warehouse).read_text())["pg_port"]
    with psycopg.connect(
        f"host=127.0.0.1 port={pg_port} user=streamlane password=scraped dbname=w"
    ) as conn:
        for _ in range(5):
            conn.execute("SELECT * FROM t").fetchall()

    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: warehouse\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    try:
        queries = wait_until(
            lambda: _prometheus_value(
                prometheus_port, 'streamlane_pg_queries_total{job="warehouse"}'
            ),
            60,
            "Prometheus to scrape the query counter",
            every_s=0.5,
        )
        assert queries >= 5
        latency = _prometheus_value(prometheus_port, "streamlane_pg_query_seconds_count")
        assert latency is not None and latency >= 5
    finally:
        prometheus.terminate()
        prometheus.wait(15)
