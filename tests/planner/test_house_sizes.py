"""The house stays in small rooms (issue #15): no planner file over 450 lines, no planner or CLI
function over 80 (a CLI command parses, calls one function, renders); ``perfmodel`` included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gridplace"
PLANNER = PACKAGE / "planner"
CLI = [*sorted((PACKAGE / "api" / "commands").glob("*.py")), PACKAGE / "api" / "cli.py"]
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def _planner_files() -> list[Path]:
    return sorted(PLANNER.rglob("*.py"))


def _long_functions(paths: list[Path]) -> dict[str, int]:
    long = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.name}:{node.name}"] = lines
    return long


def test_no_planner_file_is_over_450_lines() -> None:
    files = _planner_files()
    long = {p.name: n for p in files if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert long == {}


@pytest.mark.parametrize("room", ["planner", "cli"])
def test_no_function_is_over_80_lines(room: str) -> None:
    assert CLI[0].exists()
    assert _long_functions(_planner_files() if room == "planner" else CLI) == {}
