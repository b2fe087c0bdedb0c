"""A plan assignment's pipeline stages: contiguous half-open layer ranges on distinct nodes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gridplace.specs import Assignment


def _assignment(stages: list[dict[str, Any]], **extra: Any) -> Assignment:
    return Assignment.model_validate(
        {"workload": "big", "node": "a", "gpus": [0], "precision": "int4", "stages": stages} | extra
    )


def test_contiguous_stages_on_distinct_nodes_parse_and_round_trip() -> None:
    stages = [
        {"node": "a", "gpus": [0], "layers": [0, 40]},
        {"node": "b", "gpus": [0, 1], "layers": [40, 80]},
    ]
    a = _assignment(stages)
    assert a.stages is not None and a.stages[1].layers == (40, 80)
    again = Assignment.model_validate(a.model_dump(mode="json", by_alias=True))
    assert again == a


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"node": "a", "gpus": [0], "layers": [0, 80]}], "at least 2 stages"),
        (
            [
                {"node": "a", "gpus": [0], "layers": [0, 40]},
                {"node": "b", "gpus": [0], "layers": [41, 80]},
            ],
            "expected 40",
        ),
        (
            [
                {"node": "a", "gpus": [0], "layers": [0, 40]},
                {"node": "a", "gpus": [1], "layers": [40, 80]},
            ],
            "node twice",
        ),
        (
            [
                {"node": "b", "gpus": [0], "layers": [0, 40]},
                {"node": "a", "gpus": [0], "layers": [40, 80]},
            ],
            "first stage",
        ),
        (
            [
                {"node": "a", "gpus": [0], "layers": [0, 40]},
                {"node": "b", "gpus": [0], "layers": [40, 40]},
            ],
            "first < last",
        ),
    ],
)
def test_unsound_stages_are_refused(stages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _assignment(stages)
