"""MoE: active parameters for compute, total for memory, experts touched grow with the batch."""

from __future__ import annotations

import pytest

from gridplace.planner.perfmodel import Predictor
from gridplace.planner.perfmodel.shape import model_shape
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Precision
from gridplace.specs.model_arch import ModelArchitectureSpec
from tests.perfmodel.conftest import supported

MIXTRAL = builtin_catalog().models["mixtral-8x7b"]


def _dense_twin(moe: ModelArchitectureSpec) -> ModelArchitectureSpec:
    """A dense model with the MoE's active parameters and otherwise the same shape."""
    assert moe.active_parameters_billion is not None
    return moe.model_copy(
        update={
            "parameters_billion": moe.active_parameters_billion,
            "active_parameters_billion": None,
            "moe": None,
            "intermediate_size": None,
        }
    )


def test_memory_holds_every_expert() -> None:
    gpu = builtin_catalog().gpus["h100-sxm"]
    prediction = supported(Predictor(MIXTRAL, gpu, Precision.BF16).predict())
    assert prediction.weights_gib * 2**30 == pytest.approx(46.7e9 * 2, rel=0.01)


def test_compute_uses_active_parameters() -> None:
    gpu = builtin_catalog().gpus["h100-sxm"]
    moe = Predictor(MIXTRAL, gpu, Precision.BF16)
    dense = Predictor(_dense_twin(MIXTRAL), gpu, Precision.BF16)
    # A long prefill touches every expert and is compute-bound: flops follow active parameters.
    moe_step, dense_step = moe.roofline.prefill(4, 2048), dense.roofline.prefill(4, 2048)
    assert moe_step.bound == dense_step.bound == "compute"
    assert moe_step.compute_side_ms == pytest.approx(dense_step.compute_side_ms, rel=0.05)
    # ...while the weights it reads are all 46.7B of them, 3.6x the dense twin's.
    assert moe_step.memory_side_ms == pytest.approx(
        dense_step.memory_side_ms * 46.7 / 12.9, rel=0.05
    )


def test_one_token_reads_the_active_experts_and_a_batch_reads_them_all() -> None:
    shape = model_shape(MIXTRAL)
    assert shape.experts_touched_share(1) == pytest.approx(2 / 8)
    assert shape.experts_touched_share(4) > shape.experts_touched_share(2) > 0.25
    assert shape.experts_touched_share(64) == pytest.approx(1.0, abs=1e-3)
    one_token_parameters = shape.dense_layer_parameters + shape.active_expert_parameters
    assert one_token_parameters + shape.embedding_parameters == pytest.approx(12.9e9, rel=0.01)


def test_batch_1_decode_reads_far_less_than_the_whole_model() -> None:
    gpu = builtin_catalog().gpus["h100-sxm"]
    moe = Predictor(MIXTRAL, gpu, Precision.BF16)
    small, large = moe.roofline.decode(1, 512), moe.roofline.decode(64, 512)
    assert small.memory_side_ms < 0.4 * large.memory_side_ms
