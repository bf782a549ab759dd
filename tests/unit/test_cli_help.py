"""`streamlane --help` and each group's help list every command with its summary whole, and
every command describes each of its options and arguments."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing

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


def _commands(group: typer.Typer, path: str) -> list[object]:
    """Every command of `group` and of its subgroups, each as a test case named by its path."""
    found: list[object] = []
    for command in group.registered_commands:
        assert command.callback is not None
        name = f"{path} {command.name or command.callback.__name__.replace('_', '-')}"
        found.append(pytest.param(command, id=name.strip()))
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        found += _commands(sub.typer_instance, f"{path} {sub.name}")
    return found


@pytest.mark.parametrize("command", _commands(cli.app, ""))
def test_every_option_and_argument_says_what_it_is(command: typer.models.CommandInfo) -> None:
    """`--help` describes every flag a command takes: options without a description showed
    only their name and default, and a user had to read the code for what they meant."""
    assert command.callback is not None
    hints = typing.get_type_hints(command.callback, include_extras=True)
    for parameter in inspect.signature(command.callback).parameters.values():
        infos = [
            info
            for info in (*getattr(hints[parameter.name], "__metadata__", ()), parameter.default)
            if isinstance(info, typer.models.ParameterInfo)
        ]
        assert infos, parameter.name
        assert all(info.help for info in infos), parameter.name
