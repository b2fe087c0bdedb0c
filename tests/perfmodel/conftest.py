"""Shared helpers for the performance-model tests: catalog lookups and a predictor factory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gridplace.planner.perfmodel import Prediction, Predictor
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Interconnect, Precision

PredictorFactory = Callable[..., Predictor]


@pytest.fixture
def make_predictor() -> PredictorFactory:
    """``make_predictor("llama-3.1-8b", "h100-sxm", Precision.BF16, tp=2, ...)``."""

    def make(
        model: str,
        gpu: str,
        precision: Precision,
        engine: Engine = Engine.VLLM,
        tp: int = 1,
        derate: float = 0.0,
        interconnect: Interconnect | None = None,
        **options: object,
    ) -> Predictor:
        catalog = builtin_catalog()
        return Predictor(
            catalog.models[model],
            catalog.gpus[gpu],
            precision,
            engine,
            tp,
            derate,
            interconnect,
            model_id=model,
            gpu_id=gpu,
            **options,  # type: ignore[arg-type]
        )

    return make


def supported(result: object) -> Prediction:
    """The result as a Prediction (fails the test when it is NotSupported)."""
    assert isinstance(result, Prediction), f"expected a prediction, got {result!r}"
    return result
