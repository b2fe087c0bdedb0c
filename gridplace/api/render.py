"""Rendering results for people and machines: rich tables, JSON, YAML and JUnit XML."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gridplace.specs import SpecIssue

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)
if not stdout.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
    stdout.width = 180


def print_json(data: Any) -> None:
    """JSON on stdout, plain (no colour codes, so it pipes)."""
    print(json.dumps(data, indent=2, sort_keys=False))


def print_yaml(documents: list[dict[str, Any]]) -> None:
    print(yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=None), end="")


def print_issues(issues: list[SpecIssue], title: str = "invalid input") -> None:
    """Every issue on stderr, one per line, location first."""
    stderr.print(f"[bold red]error:[/] {title} ({len(issues)} problem{'s' * (len(issues) != 1)})")
    for issue in issues:
        stderr.print(
            f"  [cyan]{escape(issue.location())}[/]: {escape(issue.message)}", highlight=False
        )


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*row)
    return out


def junit_xml(suite: str, cases: list[tuple[str, str, list[str]]]) -> str:
    """A JUnit XML report: one testcase per (classname, name, failure messages)."""
    failures = sum(1 for _, _, messages in cases if messages)
    root = ElementTree.Element(
        "testsuites", tests=str(len(cases)), failures=str(failures), errors="0"
    )
    suite_element = ElementTree.SubElement(
        root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0"
    )
    for classname, name, messages in cases:
        case = ElementTree.SubElement(suite_element, "testcase", classname=classname, name=name)
        if messages:
            failure = ElementTree.SubElement(case, "failure", message=messages[0][:500])
            failure.text = "\n".join(messages)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, "unicode")
