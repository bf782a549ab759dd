"""`streamlane schemas check`: breaking schema changes must come as a new version.

An event type's version is part of its name (`pizza.order.confirmed.v1`), and each
version's schema is a contract consumers rely on. Comparing the schemas of a working
tree with those at a git ref, a change to an existing version is breaking when a
consumer or producer written against the old one could fail:

- a property removed (a consumer reading it breaks),
- a type or constant changed,
- a property newly required (an old producer's events become invalid),
- an enum narrowed (an old producer's value becomes invalid),
- a bound tightened (`minimum`, `maximum`, `minLength`, `minItems`),
- a version's schema deleted.

Additive changes pass: new optional properties, wider enums, looser bounds, new
descriptions, and new versions (new files).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamlane.errors import UserError


@dataclass(frozen=True)
class Breaking:
    """One breaking change: which schema, where in it, and what changed."""

    schema: str
    where: str
    change: str

    def __str__(self) -> str:
        return f"{self.schema}: {self.where}: {self.change}"


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise UserError("schemas check needs git on the PATH") from None
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["git failed"])[-1]
        raise UserError(f"git {' '.join(args)}: {message}")
    return done.stdout


def work_tree_root(path: Path) -> Path:
    """The root of the git work tree holding `path`."""
    try:
        return Path(_git(path, "rev-parse", "--show-toplevel").strip())
    except UserError:
        raise UserError(f"{path} is not in a git work tree") from None


def schemas_at(repo: Path, ref: str, folder: str) -> dict[str, dict[str, Any]]:
    """The JSON schemas in `folder` at git `ref`, by file name."""
    _git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    names = _git(repo, "ls-tree", "--name-only", f"{ref}:{folder}").split()
    found = {}
    for name in names:
        if name.endswith(".json"):
            found[name] = json.loads(_git(repo, "show", f"{ref}:{folder}/{name}"))
    return found


def schemas_in(folder: Path) -> dict[str, dict[str, Any]]:
    """The JSON schemas in a working-tree folder, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _types(node: dict[str, Any]) -> set[str]:
    kind = node.get("type")
    if kind is None:
        return set()
    return {kind} if isinstance(kind, str) else set(kind)


def _compare(name: str, old: dict[str, Any], new: dict[str, Any], where: str) -> list[Breaking]:
    out: list[Breaking] = []

    def broke(change: str) -> None:
        out.append(Breaking(name, where or "(root)", change))

    if _types(old) and _types(old) - _types(new):
        broke(f"type changed from {sorted(_types(old))} to {sorted(_types(new)) or 'any'}")
    if "const" in old and old.get("const") != new.get("const"):
        broke(f"constant changed from {old['const']!r} to {new.get('const')!r}")
    if "enum" in old:
        removed = [v for v in old["enum"] if v not in new.get("enum", old["enum"])]
        if removed:
            broke(f"enum narrowed: {removed} no longer allowed")
    elif "enum" in new:
        broke(f"enum added: only {new['enum']} allowed now")
    for bound, tighter in (("minimum", 1), ("minLength", 1), ("minItems", 1), ("maximum", -1)):
        if bound in new and (bound not in old or (new[bound] - old[bound]) * tighter > 0):
            broke(f"{bound} tightened from {old.get(bound, 'none')} to {new[bound]}")
    newly = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    if newly:
        broke(f"newly required: {', '.join(newly)}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for prop, old_child in old_props.items():
        path = f"{where}.{prop}" if where else prop
        if prop not in new_props:
            out.append(Breaking(name, path, "property removed"))
        else:
            out.extend(_compare(name, old_child, new_props[prop], path))
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        out.extend(_compare(name, old["items"], new["items"], f"{where}[]"))
    return out


def breaking_changes(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[Breaking]:
    """Every breaking change from `before` to `after` (schemas by file name)."""
    out: list[Breaking] = []
    for name, old in sorted(before.items()):
        if name not in after:
            out.append(Breaking(name, "(file)", "schema removed; keep old versions while used"))
        else:
            out.extend(_compare(name, old, after[name], ""))
    return out
