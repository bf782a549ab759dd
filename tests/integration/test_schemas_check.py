"""`streamlane schemas check` against a git ref: each kind of breaking change to an existing
version fails with one line per change; additive changes and new versions pass."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamlane.paths import SCHEMAS_DIR

NAME = "pizza.order.confirmed.v1.json"
ORIGINAL = json.loads((SCHEMAS_DIR / NAME).read_text())
Edit = Callable[[dict[str, Any]], None]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose last commit holds the shipped order schema."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / NAME).write_text(json.dumps(ORIGINAL, indent=2))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "v1")
    return tmp_path


def check(
    repo: Path, edit: Edit | None = None, new_file: str | None = None
) -> subprocess.CompletedProcess[str]:
    schema = copy.deepcopy(ORIGINAL)
    if edit:
        edit(schema)
    (repo / "schemas" / NAME).write_text(json.dumps(schema, indent=2))
    if new_file:
        (repo / "schemas" / new_file).write_text(json.dumps(schema))
    return subprocess.run(
        [sys.executable, "-m", "streamlane", "schemas", "check", "--dir", str(repo / "schemas")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def data(schema: dict[str, Any]) -> dict[str, Any]:
    return schema["properties"]["data"]


BREAKING: dict[str, tuple[Edit, str]] = {
    "removed field": (
        lambda s: data(s)["properties"].pop("channel"),
        "data.channel: property removed",
    ),
    "changed type": (
        lambda s: data(s)["properties"].update(total={"type": "object"}),
        "data.total: type changed from ['number'] to ['object']",
    ),
    "newly required": (
        lambda s: s["required"].append("subject"),
        "(root): newly required: subject",
    ),
    "narrowed enum": (
        lambda s: data(s)["properties"]["currency"].update(enum=["USD", "EUR"]),
        "data.currency: enum narrowed: ['GBP'] no longer allowed",
    ),
    "tightened bound": (
        lambda s: data(s)["properties"]["items"]["items"]["properties"]["qty"].update(minimum=2),
        "data.items[].qty: minimum tightened from 1 to 2",
    ),
}


@pytest.mark.parametrize("kind", list(BREAKING))
def test_each_kind_of_breaking_change_fails(repo: Path, kind: str) -> None:
    edit, expected = BREAKING[kind]
    result = check(repo, edit)
    assert result.returncode == 2, result.stdout
    assert f"breaking: {NAME}: {expected}" in result.stderr
    assert "1 breaking change(s) against HEAD" in result.stderr
    assert "Traceback" not in result.stderr


def test_additive_changes_and_new_versions_pass(repo: Path) -> None:
    def additive(s: dict[str, Any]) -> None:
        data(s)["properties"]["note"] = {"type": "string"}
        data(s)["properties"]["currency"]["enum"].append("CHF")
        data(s)["properties"]["total"]["description"] = "Order total in its currency."

    result = check(repo, additive, new_file="pizza.order.confirmed.v2.json")
    assert result.returncode == 0, result.stderr
    assert "no breaking changes; new: pizza.order.confirmed.v2.json" in result.stdout


def test_a_removed_version_and_a_bad_ref_are_reported(repo: Path) -> None:
    (repo / "schemas" / NAME).unlink()
    gone = subprocess.run(
        [sys.executable, "-m", "streamlane", "schemas", "check", "--dir", str(repo / "schemas")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert gone.returncode == 2 and "schema removed" in gone.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "streamlane", "schemas", "check", "--dir", str(repo / "schemas"),
         "--against", "no-such-branch"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "no-such-branch" in bad.stderr and "Traceback" not in bad.stderr
