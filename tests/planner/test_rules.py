"""The rule registry is the only list of rules: docs, compile and the model follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

import gridplace.planner.compile
import gridplace.planner.model  # noqa: F401  (the modules whose functions implement the rules)
from gridplace.planner.rules import RULES, Reason, describe, implements, rules_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "planner.md"


def test_the_docs_table_is_the_registry() -> None:
    assert rules_table() in DOC.read_text()


def test_a_rule_has_one_function_and_unknown_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="two functions"):
        implements(RULES[0].id)(lambda: None)
    with pytest.raises(ValueError, match="no rule"):
        implements("vram")


def test_reasons_are_worded_from_their_figures() -> None:
    assert describe(Reason("int4 tp1", "vram", 38.1, 24.0, "GiB")) == (
        "int4 tp1: needs 38.1 GiB per GPU, has 24.0"
    )
    assert describe(Reason("", "claims", "self-reported", "probed")) == (
        "claims self-reported < required probed"
    )
    assert describe(Reason("bf16 tp1", "ttft", 412.4, 300.0, "ms")) == (
        "bf16 tp1: TTFT 412 ms incl. network > 300 ms"
    )
