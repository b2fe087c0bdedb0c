"""Layer splits over node classes (``planner/pipeline.py``) and their max-flow throughput
(``planner/pipeline_flow.py``), on hand-sized clusters whose optimum is worked out by hand."""

from __future__ import annotations

from gridplace.planner.pipeline import (
    NodeClass,
    SplitProblem,
    best_lane,
    disaggregate,
    solve_split,
    swap_within_classes,
)
from gridplace.planner.pipeline_flow import Endpoint, PlacedNode, served_tokens_per_s

FAST = 1e9


def _links(nodes: list[int], node_link: float = FAST) -> dict[tuple[Endpoint, Endpoint], float]:
    links: dict[tuple[Endpoint, Endpoint], float] = {}
    for a in nodes:
        links["source", a] = FAST
        links[a, "sink"] = FAST
        for b in nodes:
            if a < b:
                links[a, b] = node_link
    return links


def _evaluate(
    problem: SplitProblem,
    layers: dict[int, tuple[int, int]],
    links: dict[tuple[Endpoint, Endpoint], float],
) -> float:
    capacity = {n: c.capacity_tokens_per_s for c in problem.classes for n in c.nodes}
    placed = {n: PlacedNode(a, b, capacity[n][b - a - 1]) for n, (a, b) in layers.items()}
    return served_tokens_per_s(problem.num_layers, placed, links)


def test_flow_is_the_slowest_stage_of_a_chain() -> None:
    nodes = {0: PlacedNode(0, 2, 30.0), 1: PlacedNode(2, 4, 20.0)}
    assert served_tokens_per_s(4, nodes, _links([0, 1])) == 20.0


def test_flow_adds_parallel_stages_and_is_capped_by_a_slow_link() -> None:
    nodes = {0: PlacedNode(0, 2, 30.0), 1: PlacedNode(2, 4, 20.0), 2: PlacedNode(2, 4, 20.0)}
    assert served_tokens_per_s(4, nodes, _links([0, 1, 2])) == 30.0
    assert served_tokens_per_s(4, nodes, _links([0, 1, 2], node_link=5.0)) == 10.0


def test_partial_inference_lets_a_stage_take_tokens_mid_range() -> None:
    # node 1 holds [1, 4): a token leaving node 0 at layer 2 may finish on it only with partial
    nodes = {0: PlacedNode(0, 2, 10.0), 1: PlacedNode(1, 4, 10.0)}
    assert served_tokens_per_s(4, nodes, _links([0, 1]), partial=True) == 10.0
    assert served_tokens_per_s(4, nodes, _links([0, 1]), partial=False) == 0.0


def test_a_stage_missing_the_first_layer_serves_nothing() -> None:
    nodes = {0: PlacedNode(1, 4, 10.0)}
    assert served_tokens_per_s(4, nodes, _links([0])) == 0.0


def test_split_prefers_fewer_layers_per_node_when_nodes_suffice() -> None:
    # 4 layers; a node holding 1 layer serves 10 tok/s, 2 layers 4 tok/s
    two = SplitProblem(4, (NodeClass("a", "r", (0, 1), (10.0, 4.0)),), {("r", "r"): FAST})
    four = SplitProblem(4, (NodeClass("a", "r", (0, 1, 2, 3), (10.0, 4.0)),), {("r", "r"): FAST})
    r2, r4 = solve_split(two, time_limit_s=5), solve_split(four, time_limit_s=5)
    assert (r2.tokens_per_s, r4.tokens_per_s) == (4.0, 10.0)
    assert _evaluate(two, r2.layers, _links([0, 1])) == 4.0
    assert _evaluate(four, r4.layers, _links([0, 1, 2, 3])) == 10.0
    assert sorted(r4.layers.values()) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_split_mixes_gpu_kinds_by_capacity() -> None:
    # 3 layers: a fast node holds 2 layers at 9 tok/s, two slow ones 1 layer at 5 each, in parallel
    problem = SplitProblem(
        3,
        (NodeClass("fast", "r", (0,), (20.0, 9.0)), NodeClass("slow", "r", (1, 2), (5.0,))),
        {("r", "r"): FAST},
    )
    result = solve_split(problem, time_limit_s=5)
    assert result.tokens_per_s == 9.0
    assert _evaluate(problem, result.layers, _links([0, 1, 2])) == 9.0


def test_a_slow_link_between_regions_caps_the_pipeline() -> None:
    # 3 layers: east holds 2, west's nodes 1 each; one east-west link carries 3 tok/s, and two
    # west nodes in parallel over the last layer double the links
    def problem(west: tuple[int, ...]) -> SplitProblem:
        return SplitProblem(
            3,
            (NodeClass("a", "east", (0,), (10.0, 10.0)), NodeClass("b", "west", west, (10.0,))),
            {("east", "west"): 3.0, ("east", "east"): FAST, ("west", "west"): FAST},
        )

    r1, r2 = (
        solve_split(problem((1,)), time_limit_s=5),
        solve_split(problem((1, 2)), time_limit_s=5),
    )
    assert r1.tokens_per_s == 3.0
    assert r2.tokens_per_s == 6.0
    links: dict[tuple[Endpoint, Endpoint], float] = {**_links([0, 1, 2]), (0, 1): 3.0, (0, 2): 3.0}
    assert _evaluate(problem((1, 2)), r2.layers, links) == 6.0


def test_best_lane_is_a_feasible_single_pipeline() -> None:
    problem = SplitProblem(4, (NodeClass("a", "r", (0, 1, 2), (10.0, 4.0)),), {("r", "r"): FAST})
    level, counts = best_lane(problem)
    layers = disaggregate(problem, counts)
    assert level == 4.0
    assert _evaluate(problem, layers, _links([0, 1, 2])) == 4.0


def test_disaggregate_gives_each_node_one_range() -> None:
    problem = SplitProblem(4, (NodeClass("a", "r", (5, 7), (1.0, 1.0)),), {})
    assert disaggregate(problem, {(0, 0, 2): 1, (0, 2, 2): 1}) == {5: (0, 2), 7: (2, 4)}


def test_swaps_within_a_class_find_the_better_link() -> None:
    problem = SplitProblem(
        2,
        (NodeClass("a", "east", (0,), (10.0,)), NodeClass("b", "west", (1, 2), (10.0,))),
        {("east", "west"): 4.0},
    )
    links: dict[tuple[Endpoint, Endpoint], float] = {**_links([0, 1, 2]), (0, 1): 3.0, (0, 2): 5.0}

    def score(layers: dict[int, tuple[int, int]]) -> float:
        return _evaluate(problem, layers, links)

    better = swap_within_classes(problem, {0: (0, 1), 1: (1, 2)}, score)
    assert better == {0: (0, 1), 2: (1, 2)}
    assert score(better) == 5.0
