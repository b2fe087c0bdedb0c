"""The planner stays in small rooms: no file over 450 lines, no function over 80 (issue #15).
``perfmodel`` is its own package with its own owner and is not counted here."""

from __future__ import annotations

import ast
from pathlib import Path

PLANNER = Path(__file__).resolve().parents[2] / "gridplace" / "planner"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def _files() -> list[Path]:
    return sorted(p for p in PLANNER.glob("*.py"))


def test_no_planner_file_is_over_450_lines() -> None:
    long = {p.name: n for p in _files() if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert long == {}


def test_no_planner_function_is_over_80_lines() -> None:
    long = {}
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.name}:{node.name}"] = lines
    assert long == {}
