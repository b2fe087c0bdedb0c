"""Hypothesis: whatever the input, the loader answers with a bundle or a SpecError, nothing else."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridplace.specs import SpecError, load_bundle
from tests.specs import documents

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    mutated = copy.deepcopy(data)
    parent = mutated
    for part in path[:-1]:
        parent = parent[part]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[str(value)[:20] or "x"] = value
    else:
        parent[path[-1]] = value
    return mutated


def _check(text: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_bundle([path])
    except SpecError as error:
        assert error.issues and all(issue.message for issue in error.issues)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(list(documents.ALL)),
    choice=st.integers(min_value=0, max_value=10**6),
    action=st.sampled_from(["replace", "delete", "add"]),
    value=values,
)
def test_mutated_documents_give_a_bundle_or_a_spec_error(
    kind: str, choice: int, action: str, value: Any, tmp_path: Path
) -> None:
    data = yaml.safe_load(documents.ALL[kind])
    paths = _paths(data)
    mutated = _mutate(data, paths[choice % len(paths)], action, value)
    _check(yaml.safe_dump(mutated, allow_unicode=True), tmp_path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_arbitrary_text_gives_a_bundle_or_a_spec_error(text: str, tmp_path: Path) -> None:
    _check(text, tmp_path)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.integers(min_value=0, max_value=2000),
    junk=st.sampled_from(["", ":", "- ", "{", "&a", "*a", "!!x", "\t"]),
)
def test_truncated_documents_give_a_bundle_or_a_spec_error(
    cut: int, junk: str, tmp_path: Path
) -> None:
    text = documents.WORKLOAD + "---\n" + documents.NODE
    _check(text[: cut % len(text)] + junk, tmp_path)
