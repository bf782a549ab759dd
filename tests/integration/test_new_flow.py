"""`streamlane new flow`: the scaffold of a new flow runs and passes its own test as written.

The scaffold goes into a copy of the project, the way a user would start, and its
end-to-end test runs there against a real broker and warehouse.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamlane.paths import PROJECT_ROOT

PROJECT_PARTS = (
    "streamlane", "flows", "generators", "enrichers", "sinks", "schemas", "reference", "tests",
    "pyproject.toml",
)  # fmt: skip


def streamlane(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlane", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for part in PROJECT_PARTS:
        source = PROJECT_ROOT / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / part)
    return root


@pytest.mark.timeout(300)
def test_a_scaffolded_flow_passes_its_own_test(project: Path) -> None:
    made = streamlane(project, "new", "flow", "payments", "--dir", str(project))
    assert made.returncode == 0, made.stderr
    for path in (
        "flows/payments.py",
        "generators/payments.py",
        "tests/e2e/test_payments_flow.py",
        "schemas/payments.event.v1.json",
    ):
        assert f"created {path}" in made.stdout
    listed = subprocess.run(
        [sys.executable, "-c", "from streamlane.flow import flow_names; print(flow_names())"],
        cwd=project, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "payments" in listed.stdout
    checks = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "flows/payments.py", "generators/payments.py",
         "tests/e2e/test_payments_flow.py"],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checks.returncode == 0, checks.stdout
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/e2e/test_payments_flow.py"],
        cwd=project, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "1 passed" in run.stdout


def test_new_flow_refuses_to_overwrite_or_a_bad_name(project: Path) -> None:
    assert streamlane(project, "new", "flow", "payments", "--dir", str(project)).returncode == 0
    again = streamlane(project, "new", "flow", "payments", "--dir", str(project))
    assert again.returncode == 2
    assert (
        again.stderr.strip().splitlines() == [again.stderr.strip().splitlines()[0]]
        and "not overwriting flows/payments.py" in again.stderr
    )
    bad = streamlane(project, "new", "flow", "Pay-ments", "--dir", str(project))
    assert bad.returncode == 2
    assert "must be a lower-case identifier" in bad.stderr
    assert "Traceback" not in bad.stderr + again.stderr


def test_new_flow_run_elsewhere_names_the_files_in_full(project: Path, tmp_path: Path) -> None:
    """Run from outside the project, it says where the files went in full: relative to the
    project's root, as before, they read as if they were in the working folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = streamlane(elsewhere, "new", "flow", "payments", "--dir", str(project))
    assert made.returncode == 0, made.stderr
    assert f"created {project.resolve() / 'flows' / 'payments.py'}" in made.stdout.splitlines()
    assert f"edit {project.resolve() / 'flows' / 'payments.py'} and" in made.stdout
    assert not any(elsewhere.iterdir())
