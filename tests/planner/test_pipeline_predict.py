"""A replica as a pipeline of stages (``planner/pipeline_predict.py``): stage VRAM, hand-offs over
slow links, ITL against stages and latency, splitting only when needed, refusals with numbers."""

from __future__ import annotations

import pytest

from gridplace.planner.pipeline_predict import (
    Link,
    ModelLoad,
    Refusal,
    Stage,
    StageNode,
    handoff_ms,
    plan_pipeline,
    predict_pipeline,
    split_layers,
    stage_errors,
    stage_vram_gib,
)

# 80 layers, 40 GiB of weights + 8 GiB of KV: 0.6 GiB per layer, 1 GiB reserve per GPU
LOAD = ModelLoad(80, 40.0, 8.0, 1.0, 8192, 2)


def _node(name: str, region: str = "eu", memory: float = 24.0, gpus: int = 1) -> StageNode:
    return StageNode(name, region, gpus, memory, decode_ms=40.0, prefill_ms=400.0)


def _links(a: str, b: str) -> Link:
    return Link(1.0, 10.0) if a == b else Link(50.0, 0.1)


def test_stage_vram_is_its_layers_share_plus_the_reserve() -> None:
    assert stage_vram_gib(LOAD, 20, 1) == pytest.approx(48.0 / 4 + 1.0)
    assert stage_vram_gib(LOAD, 20, 2) == pytest.approx(48.0 / 8 + 1.0)
    assert stage_vram_gib(LOAD, 80, 1) == pytest.approx(49.0)


def test_activation_handoff_on_a_slow_link() -> None:
    # 8192 x 2 bytes x 100 tokens = 13.1 Mbit: 131 ms at 0.1 Gbit/s, 1.3 ms at 10 Gbit/s
    assert handoff_ms(LOAD, 100, Link(50.0, 0.1)) == pytest.approx(50.0 + 131.072)
    assert handoff_ms(LOAD, 100, Link(1.0, 10.0)) == pytest.approx(1.0 + 1.31072)


def test_itl_grows_with_stages_and_link_latency() -> None:
    nodes = {n.name: n for n in (_node("a"), _node("b"), _node("c"), _node("d", "us"))}
    two = (Stage("a", 1, 0, 40), Stage("b", 1, 40, 80))
    three = (Stage("a", 1, 0, 30), Stage("b", 1, 30, 55), Stage("c", 1, 55, 80))
    far = (Stage("a", 1, 0, 40), Stage("d", 1, 40, 80))
    itl = {
        name: predict_pipeline(LOAD, stages, nodes, _links, batch=1, prompt_tokens=512).itl_ms
        for name, stages in (("two", two), ("three", three), ("far", far))
    }
    assert itl["two"] < itl["three"] < itl["far"]
    assert itl["far"] - itl["two"] == pytest.approx(
        49.0 + 16384 * 8 / 0.1e9 * 1e3 - 16384 * 8 / 10e9 * 1e3
    )


def test_throughput_is_the_slowest_stages() -> None:
    nodes = {"a": _node("a"), "b": _node("b")}
    uneven = (Stage("a", 1, 0, 60), Stage("b", 1, 60, 80))
    p = predict_pipeline(LOAD, uneven, nodes, _links, batch=8, prompt_tokens=512)
    assert p.tokens_per_s == pytest.approx(8 / (40.0 * 60 / 80) * 1e3)


def test_a_model_that_fits_one_node_is_not_split() -> None:
    stages = split_layers(LOAD, [_node("big", memory=80.0), _node("b"), _node("c")])
    assert stages == (Stage("big", 1, 0, 80),)


def test_layers_spread_evenly_over_identical_nodes() -> None:
    stages = split_layers(LOAD, [_node("a"), _node("b"), _node("c"), _node("d")])
    assert not isinstance(stages, Refusal)
    assert [s.layers for s in stages] == [27, 27, 26]  # 38 layers fit a 24 GiB node


def test_nodes_with_too_little_vram_are_refused_with_numbers() -> None:
    refusal = split_layers(LOAD, [_node("a", memory=12.0), _node("b", memory=12.0)])
    assert isinstance(refusal, Refusal)
    assert "2 nodes hold 36 of 80 layers" in refusal.reason
    assert "0.60 GiB per layer + 1.00 GiB reserve" in refusal.reason
    assert "a 18, b 18" in refusal.reason


def test_one_region_is_placed_and_three_far_apart_refused_naming_the_network() -> None:
    near = plan_pipeline(
        LOAD,
        [_node("a"), _node("b"), _node("c")],
        _links,
        itl_target_ms=80.0,
        batch=1,
        prompt_tokens=512,
    )
    assert not isinstance(near, Refusal) and near.regions == ("eu",)
    apart = [_node("a", "eu"), _node("b", "us"), _node("c", "ap")]
    far = plan_pipeline(LOAD, apart, _links, itl_target_ms=80.0, batch=1, prompt_tokens=512)
    assert isinstance(far, Refusal)
    # two hops of 50 ms + one token's activations (131 kbit) at 0.1 Gbit/s, 1.3 ms each
    assert far.reason.startswith("3 stages over ap, eu, us need 103 ms of network per token")
    assert far.reason.endswith("> 80 ms ITL")


def test_stage_errors_find_gaps_overlaps_short_cover_and_vram() -> None:
    nodes = {n.name: n for n in (_node("a"), _node("b"), _node("small", memory=8.0))}
    assert stage_errors(LOAD, (Stage("a", 1, 0, 38), Stage("b", 1, 38, 80)), nodes) == [
        "stage 1 on b: layers [38, 80) need 26.2 GiB per GPU > 24 GiB"
    ]
    assert stage_errors(LOAD, (Stage("a", 1, 0, 30), Stage("b", 1, 31, 60)), nodes) == [
        "stage 1 on b starts at layer 31, expected 30",
        "stages cover layers up to 60 of 80",
    ]
    assert stage_errors(
        LOAD, (Stage("a", 1, 0, 30), Stage("a", 1, 30, 60), Stage("b", 1, 60, 80)), nodes
    ) == ["node a holds 2 stages"]
    assert stage_errors(LOAD, (Stage("small", 1, 0, 40), Stage("b", 1, 40, 80)), nodes)[
        0
    ].startswith("stage 0 on small: layers [0, 40) need 25.0 GiB")
