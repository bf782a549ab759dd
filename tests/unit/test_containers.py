"""docker-compose.yml is valid, and every app service runs a `streamlane` command that parses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from streamlane.cli import app

ROOT = Path(__file__).parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"


def compose_config() -> dict:
    done = subprocess.run(
        [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_compose_file_is_valid() -> None:
    assert shutil.which(str(COMPOSE)), "docker-compose (compose v2) comes with the dev dependencies"
    services = compose_config()["services"]
    assert {
        "kafka",
        "topics",
        "generator",
        "flow-0",
        "flow-1",
        "warehouse",
        "grafana",
        "prometheus",
    } <= set(services)
    for mount in services["grafana"]["volumes"]:
        assert Path(mount["source"]).exists(), mount["source"]


def parsed_command(service: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The parameters a compose service's `streamlane` command parses into, with the
    service's environment set; fails on arguments no command takes."""
    spec = compose_config()["services"][service]
    for name, value in spec.get("environment", {}).items():
        monkeypatch.setenv(name, str(value))
    group = typer.main.get_command(app)
    ctx = group.make_context("streamlane", list(spec["command"]))
    command = group
    args = [*ctx._protected_args, *ctx.args]  # what is left for the subcommands
    while hasattr(command, "resolve_command"):
        _, command, args = command.resolve_command(ctx, args)
        ctx = command.make_context(command.name, args, parent=ctx)
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]
    assert not args, f"{service}: unexpected arguments {args}"
    return ctx.params


@pytest.mark.parametrize("service", ["topics", "generator", "flow-0", "flow-1", "warehouse"])
def test_app_service_command_parses(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed_command(service, monkeypatch)
    assert os.environ.get("STREAMLANE_BROKERS") == "kafka:9092"


def scrape_targets() -> list[str]:
    """The `host:port` targets prometheus.yml scrapes."""
    listed = re.search(r"targets:\s*\[([^\]]*)\]", (ROOT / "prometheus.yml").read_text())
    assert listed, "prometheus.yml lists its targets"
    return [t.strip().strip('"') for t in listed.group(1).split(",")]


@pytest.mark.parametrize("target", scrape_targets())
def test_every_scraped_service_serves_its_metrics_to_other_containers(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prometheus scrapes each target from its own container: the service must serve its
    metrics on that port on every interface, not only on its loopback (the default)."""
    service, port = target.rsplit(":", 1)
    params = parsed_command(service, monkeypatch)
    assert params["metrics_port"] == int(port), params
    assert params["metrics_host"] == "0.0.0.0", params


def test_the_image_holds_every_package_and_data_folder() -> None:
    import re
    import tomllib

    copied = set(re.findall(r"^COPY (\S+) \./", (ROOT / "Dockerfile").read_text(), re.M))
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"reference"} <= copied, "the Dockerfile misses a folder the code imports"
