"""docker-compose.yml is valid, and every app service runs a `streamlane` command that parses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("service", ["topics", "generator", "flow-0", "flow-1", "warehouse"])
def test_app_service_command_parses(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert os.environ.get("STREAMLANE_BROKERS") == "kafka:9092"


def test_the_image_holds_every_package_and_data_folder() -> None:
    import re
    import tomllib

    copied = set(re.findall(r"^COPY (\S+) \./", (ROOT / "Dockerfile").read_text(), re.M))
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"reference"} <= copied, "the Dockerfile misses a folder the code imports"
