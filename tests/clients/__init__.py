"""Real PostgreSQL clients driven from the tests: lib/pq (Go), JDBC, psql.

Go and JDBC programs share a line protocol (see tests/clients/go/main.go); they are
built from source with the Debian packages the test setup installs.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
JDBC_JAR = Path("/usr/share/java/postgresql.jar")
GO_PATH = "/usr/share/gocode"


@dataclass(frozen=True)
class Answer:
    """One query's answer from a client: column (name, type) pairs, rows as text, or an error."""

    columns: list[tuple[str, str]]
    rows: list[list[str | None]]
    error: str | None = None


def parse_blocks(text: str) -> list[Answer]:
    answers: list[Answer] = []
    columns: list[tuple[str, str]] = []
    rows: list[list[str | None]] = []
    for line in text.splitlines():
        if line.startswith("COLUMNS"):
            columns = [tuple(c.rsplit(":", 1)) for c in line.split("\t")[1:]]  # type: ignore[misc]
            rows = []
        elif line.startswith("END "):
            answers.append(Answer(columns, rows))
        elif line.startswith("ERROR "):
            answers.append(Answer([], [], line[6:]))
        else:
            rows.append([None if v == "\\N" else v for v in line.split("\t")])
    return answers


def build_go(out_dir: Path) -> Path:
    binary = out_dir / "pgcheck"
    env = {
        **os.environ,
        "GOPATH": GO_PATH,
        "GO111MODULE": "off",
        "GOCACHE": str(out_dir / "gocache"),
    }
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "go", env=env, check=True)
    return binary


def build_jdbc(out_dir: Path) -> Path:
    classes = out_dir / "jdbc"
    subprocess.run(
        ["javac", "-d", str(classes), "-cp", str(JDBC_JAR), str(HERE / "jdbc" / "JdbcCheck.java")],
        check=True,
    )
    return classes


def _lines(queries: list[tuple[str, str | None]]) -> str:
    """One query per line: runs of white space fold to one space (no query here has any in a literal)."""
    return "".join(
        " ".join(q.split()) + (f"\t{p}" if p is not None else "") + "\n" for q, p in queries
    )


def run_go(binary: Path, dsn: str, queries: list[tuple[str, str | None]]) -> list[Answer]:
    done = subprocess.run(
        [str(binary)], input=_lines(queries), capture_output=True, text=True, timeout=300,
        env={**os.environ, "PGDSN": dsn},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return parse_blocks(done.stdout)


def run_jdbc(
    classes: Path, host: str, port: str, password: str, queries: list[tuple[str, str | None]]
) -> list[Answer]:
    env = {**os.environ, "JDBC_URL": f"jdbc:postgresql://{host}:{port}/warehouse",
           "PGUSER": "streamlane", "PGPASSWORD": password}  # fmt: skip
    # JDBC marks parameters with `?`; the queries are written with PostgreSQL's `$n`.
    jdbc_queries = [(re.sub(r"\$\d+", "?", q), p) for q, p in queries]
    done = subprocess.run(
        ["java", "-cp", f"{classes}:{JDBC_JAR}", "JdbcCheck"],
        input=_lines(jdbc_queries), capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return parse_blocks(done.stdout)
