"""JSON Schema of every kind, in its YAML (camelCase) spelling."""

from __future__ import annotations

from typing import Any

from gridplace.specs.loader import KINDS


def kind_names() -> list[str]:
    return list(KINDS)


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind`` (case-insensitive); KeyError lists the kinds when unknown."""
    by_lower = {name.lower(): name for name in KINDS}
    name = by_lower.get(kind.lower())
    if name is None:
        raise KeyError(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
    schema = KINDS[name].model_json_schema(by_alias=True, mode="validation")
    schema["$id"] = f"https://gridplace.dev/schemas/v1alpha1/{name}.json"
    return schema
