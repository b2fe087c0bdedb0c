"""Cold start, query validation and catalog references."""

from __future__ import annotations

import pytest

from gridplace.planner.perfmodel import InvalidQuery, cold_start, predict
from gridplace.specs import SpecError, builtin_catalog
from gridplace.specs.common import Engine, Precision
from tests.perfmodel.conftest import PredictorFactory, supported


def test_cached_weights_start_faster(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-70b", "h100-sxm", Precision.FP8, tp=4)
    cold = predictor.cold_start(network_gbit_per_s=10, cached=False)
    warm = predictor.cold_start(network_gbit_per_s=10, cached=True)
    assert warm.download_s == 0 < cold.download_s
    assert warm.total_s < cold.total_s
    # ~66 GiB over 10 Gbit/s at 80% goodput is about a minute and a quarter.
    assert 60 < cold.download_s < 90


def test_faster_network_and_more_gpus_load_faster() -> None:
    gpu = builtin_catalog().gpus["a100-pcie-80gb"]
    slow = cold_start(40e9, gpu, 1, 30.0, network_gbit_per_s=1, cached=False)
    fast = cold_start(40e9, gpu, 1, 30.0, network_gbit_per_s=25, cached=False)
    assert fast.total_s < slow.total_s
    single = cold_start(40e9, gpu, 1, 30.0, network_gbit_per_s=1, cached=True, disk_gbyte_per_s=50)
    split = cold_start(40e9, gpu, 4, 30.0, network_gbit_per_s=1, cached=True, disk_gbyte_per_s=50)
    assert split.load_s < single.load_s  # each GPU copies only its shard over its own PCIe link


def test_engine_start_up_counts() -> None:
    vllm = supported(predict("llama-3.1-8b", "rtx-4090", Precision.INT4, Engine.VLLM))
    llama_cpp = supported(predict("llama-3.1-8b", "rtx-4090", Precision.INT4, Engine.LLAMA_CPP))
    assert (
        llama_cpp.predictor.cold_start(network_gbit_per_s=1, cached=True).engine_init_s
        < vllm.predictor.cold_start(network_gbit_per_s=1, cached=True).engine_init_s
    )


@pytest.mark.parametrize(
    ("field", "arguments"),
    [("batch", {"batch": 0}), ("prompt_tokens", {"prompt_tokens": 0}), ("tp", {"tp": 0})],
)
def test_out_of_domain_queries_raise(field: str, arguments: dict[str, int]) -> None:
    with pytest.raises(InvalidQuery) as caught:
        predict("llama-3.1-8b", "rtx-4090", Precision.FP16, **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_references_resolve_by_alias_and_unknown_ones_list_near_matches() -> None:
    by_alias = supported(
        predict("meta-llama/Llama-3.1-8B-Instruct", "NVIDIA GeForce RTX 4090", Precision.FP8)
    )
    by_id = supported(predict("llama-3.1-8b", "rtx-4090", Precision.FP8))
    assert by_alias.itl_ms == by_id.itl_ms
    with pytest.raises(SpecError) as caught:
        predict("llama-3.1-8b", "rtx-4909", Precision.FP8)
    assert "rtx-4090" in str(caught.value)
