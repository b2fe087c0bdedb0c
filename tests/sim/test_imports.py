"""Imports flow one way (DESIGN.md): sim may use planner, topology and specs; nothing below the
API imports sim, and sim imports neither hal, executor nor api."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gridplace"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for statement in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(statement, ast.ImportFrom) and statement.module:
            found.add(statement.module)
        elif isinstance(statement, ast.Import):
            found.update(alias.name for alias in statement.names)
    return found


def test_sim_imports_only_upstream_packages() -> None:
    forbidden = ("gridplace.api", "gridplace.executor", "gridplace.hal")
    for path in (PACKAGE / "sim").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(forbidden)}
        assert not bad, f"{path.name} imports {bad}"


def test_only_the_api_imports_sim() -> None:
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0]
        if top in ("sim", "api"):
            continue
        bad = {m for m in _imports(path) if m.startswith("gridplace.sim")}
        assert not bad, f"{path} imports {bad}"
