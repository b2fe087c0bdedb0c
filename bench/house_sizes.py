"""House sizes: the longest functions and files of a source tree (issue 15's measure).

A function's length is its lines from ``def`` (decorators excluded) to its last line, docstring
included, as ``ast`` reports them; a file's is its line count. Nested functions count on their
own and inside their parent.

    .venv/bin/python bench/house_sizes.py                  # this checkout's gridplace/
    .venv/bin/python bench/house_sizes.py /tmp/before/gridplace --top 5
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sized:
    where: str
    lines: int


def functions(path: Path, root: Path) -> list[Sized]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Sized] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            end = node.end_lineno or node.lineno
            where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
            found.append(Sized(where, end - node.lineno + 1))
    return found


def measure(root: Path) -> tuple[list[Sized], list[Sized]]:
    """Every function and every file under ``root``, longest first."""
    files = sorted(root.rglob("*.py"))
    sized_files = [
        Sized(str(p.relative_to(root)), len(p.read_text(encoding="utf-8").splitlines()))
        for p in files
    ]
    sized_functions = [f for p in files for f in functions(p, root)]
    key = lambda s: (-s.lines, s.where)  # noqa: E731 - longest first, then by name
    return sorted(sized_functions, key=key), sorted(sized_files, key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="gridplace", type=Path)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--over", type=int, default=80, help="count functions over this length")
    args = parser.parse_args()
    sized_functions, sized_files = measure(args.root)
    over = sum(1 for f in sized_functions if f.lines > args.over)
    total = sum(f.lines for f in sized_files)
    print(f"{args.root}: {len(sized_files)} files, {total} lines, {len(sized_functions)} functions")
    print(f"functions over {args.over} lines: {over}")
    print(f"longest functions (top {args.top}):")
    for sized in sized_functions[: args.top]:
        print(f"  {sized.lines:5d}  {sized.where}")
    print(f"longest files (top {args.top}):")
    for sized in sized_files[: args.top]:
        print(f"  {sized.lines:5d}  {sized.where}")
    print(f"command: .venv/bin/python bench/house_sizes.py {args.root} --top {args.top}")


if __name__ == "__main__":
    main()
