"""PerformanceProfile documents override measured points and refit the rest."""

from __future__ import annotations

import pytest

from gridplace.planner.perfmodel import Predictor, ProfileBook, ProfileError
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Metadata, Precision
from gridplace.specs.profile import PerformanceProfile, PerformanceProfileSpec, ProfilePoint
from tests.perfmodel.conftest import supported

CATALOG = builtin_catalog()


def _profile(points: list[ProfilePoint], *, tp: int = 1, model: str = "llama-3.1-8b",
             gpu: str = "NVIDIA GeForce RTX 4090") -> PerformanceProfile:  # fmt: skip
    return PerformanceProfile(
        metadata=Metadata(name="measured-4090"),
        spec=PerformanceProfileSpec(
            model=model, gpu=gpu, precision=Precision.INT4, engine=Engine.LLAMA_CPP,
            tensor_parallel=tp, points=points, source="bench run 2026-11-01",
        ),
    )  # fmt: skip


def _predictors(book: ProfileBook, tp: int = 1) -> tuple[Predictor, Predictor]:
    model, gpu = CATALOG.models["llama-3.1-8b"], CATALOG.gpus["rtx-4090"]
    args = (model, gpu, Precision.INT4, Engine.LLAMA_CPP, tp)
    plain = Predictor(*args)
    profiled = Predictor(*args, profiles=book, model_id="llama-3.1-8b", gpu_id="rtx-4090")
    return plain, profiled


def test_a_measured_point_is_returned_as_measured() -> None:
    point = ProfilePoint(batch=1, prompt_tokens=512, context_tokens=512, ttft_ms=99.0, itl_ms=12.5)
    _, profiled = _predictors(ProfileBook.from_documents([_profile([point])], CATALOG))
    prediction = supported(profiled.predict(1, 512, 512))
    assert prediction.ttft_ms == pytest.approx(99.0)
    assert prediction.itl_ms == pytest.approx(12.5)
    assert prediction.source == "measured"


def test_other_points_are_refit_by_the_measured_ratio() -> None:
    plain, _ = _predictors(ProfileBook())
    measured_itl = 2 * plain.decode_ms(1, 1000)
    measured_ttft = 0.5 * plain.prefill_ms(1, 1000)
    points = [ProfilePoint(batch=1, prompt_tokens=1000, context_tokens=1000,
                           ttft_ms=measured_ttft, itl_ms=measured_itl)]  # fmt: skip
    _, profiled = _predictors(ProfileBook.from_documents([_profile(points)], CATALOG))
    elsewhere = supported(profiled.predict(8, 300, 4000))
    assert elsewhere.source == "profile"
    assert elsewhere.itl_ms == pytest.approx(2 * plain.decode_ms(8, 4000))
    assert elsewhere.ttft_ms == pytest.approx(0.5 * plain.prefill_ms(8, 300))
    # Capacity sees the refit too: a 2x slower decode halves what fits under a tight ITL target.
    assert profiled.decode_ms(16, 700) == pytest.approx(2 * plain.decode_ms(16, 700))


def test_a_profile_at_another_tp_still_refits() -> None:
    plain_tp1, _ = _predictors(ProfileBook())
    itl = 1.5 * plain_tp1.decode_ms(1, 600)
    book = ProfileBook.from_documents(
        [_profile([ProfilePoint(batch=1, context_tokens=600, itl_ms=itl)], tp=1)], CATALOG
    )
    plain_tp2, profiled_tp2 = _predictors(book, tp=2)
    assert profiled_tp2.decode_ms(4, 900) == pytest.approx(1.5 * plain_tp2.decode_ms(4, 900))


def test_profiles_for_another_precision_do_not_apply() -> None:
    book = ProfileBook.from_documents(
        [_profile([ProfilePoint(batch=1, context_tokens=10, itl_ms=1000.0)])], CATALOG
    )
    model, gpu = CATALOG.models["llama-3.1-8b"], CATALOG.gpus["rtx-4090"]
    plain = Predictor(model, gpu, Precision.FP8, Engine.VLLM)
    other = Predictor(model, gpu, Precision.FP8, Engine.VLLM, profiles=book,
                      model_id="llama-3.1-8b", gpu_id="rtx-4090")  # fmt: skip
    assert other.decode_ms(1, 10) == plain.decode_ms(1, 10)


def test_matching_by_figures_when_ids_are_unknown() -> None:
    book = ProfileBook.from_documents(
        [_profile([ProfilePoint(batch=1, context_tokens=64, itl_ms=3.0)])], CATALOG
    )
    model, gpu = CATALOG.models["llama-3.1-8b"], CATALOG.gpus["rtx-4090"]
    profiled = Predictor(model, gpu, Precision.INT4, Engine.LLAMA_CPP, profiles=book)
    assert supported(profiled.predict(1, 64, 64)).itl_ms == pytest.approx(3.0)


def test_unknown_references_raise_with_near_matches() -> None:
    with pytest.raises(ProfileError) as caught:
        ProfileBook.from_documents([_profile([ProfilePoint(itl_ms=1.0)], gpu="rtx-4909")], CATALOG)
    assert caught.value.profile == "measured-4090"
    assert "rtx-4090" in str(caught.value)
