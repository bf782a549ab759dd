"""`streamlane --help` and each group's help list every command with its summary whole."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest
import typer

from streamlane import cli

GROUPS = {"": cli.app} | {
    group.name: group.typer_instance for group in cli.app.registered_groups if group.name
}


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_each_listed_command_shows_its_first_paragraph_on_one_line(name: str) -> None:
    """On a terminal wide enough, each command's summary is one line of the list: its
    docstring's line breaks used to cut it into pieces mid-sentence."""
    group = GROUPS[name]
    assert isinstance(group, typer.Typer)
    shown = subprocess.run(
        [sys.executable, "-m", "streamlane", *([name] if name else []), "--help"],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "COLUMNS": "400"},
    ).stdout  # fmt: skip
    assert group.registered_commands, name
    for command in group.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        summary = " ".join(doc.split("\n\n")[0].split())
        assert any(summary in line for line in shown.splitlines()), (summary, shown)
