"""The Observations kind: windows validate their length, counts and percentile order."""

import pytest
from pydantic import ValidationError

from gridplace.specs import Observations, ObservationWindow

WINDOW = {
    "node": "lis-3090-a",
    "workload": "chat-8b",
    "model": "llama-3.1-8b",
    "gpu": "rtx-3090",
    "precision": "int4",
    "engine": "llama.cpp",
    "startS": 1_700_000_000,
    "endS": 1_700_000_060,
    "requests": 42,
    "promptTokens": 42_000,
    "outputTokens": 8_400,
    "ttft": {"p50Ms": 120, "p99Ms": 480},
}


def test_a_window_parses_from_camel_case() -> None:
    window = ObservationWindow.model_validate(WINDOW)
    assert window.seconds == 60
    assert window.ttft is not None and window.ttft.p99_ms == 480


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endS": 1_700_000_000}, "endS - startS"),
        ({"endS": 1_700_000_000 + 2 * 86_400}, "endS - startS"),
        ({"ttft": {"p50Ms": 500, "p99Ms": 100}}, "must not decrease"),
        ({"requests": -1}, "greater than or equal"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_bad_windows_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ObservationWindow.model_validate({**WINDOW, **change})


def test_a_document_needs_windows_and_bounds_them() -> None:
    doc = {"apiVersion": "gridplace/v1alpha1", "kind": "Observations", "metadata": {"name": "x"}}
    with pytest.raises(ValidationError):
        Observations.model_validate({**doc, "spec": {"windows": []}})
    with pytest.raises(ValidationError):
        Observations.model_validate({**doc, "spec": {"windows": [WINDOW] * 1001}})
    assert (
        len(Observations.model_validate({**doc, "spec": {"windows": [WINDOW]}}).spec.windows) == 1
    )
