"""The compile cache across plans: the same Problem with and without it, and a replan that asks
the performance model only about what changed (counted)."""

from __future__ import annotations

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.compile_cache import CompileCache
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Problem
from gridplace.planner.recalibrate import Calibration, Correction
from gridplace.specs import Node, builtin_catalog
from tests.planner.fakes import FakeLatency
from tests.planner.grids import node, workload

NODES = [
    node("a1", "rtx-4090", region="eu-west"),
    node("a2", "rtx-4090", region="eu-west"),
    node("b1", "l40s", count=2, region="eu-west", price=1.6),
    node("c1", "a100-sxm-80gb", count=4, region="us-east", price=6.0, interconnect="nvlink"),
]
WORKLOADS = [
    workload("chat", precisions=("bf16", "int4"), rps=3.0),
    workload("code", model="qwen2.5-14b", precisions=("bf16", "fp8"), rps=1.0, ttft_ms=1500),
    workload("far", sources=(("us-east", 0.5), ("eu-west", 0.5)), rps=2.0),
]


def compile_with(
    nodes: list[Node], cache: CompileCache | None, calibration: Calibration | None = None
) -> Problem:
    inputs = PlannerInputs(nodes, WORKLOADS, builtin_catalog(), headroom=0.1)
    latency = FakeLatency({n.name: n.spec.region for n in nodes}, default_ms=120)
    return compile_problem(inputs, make_predictor(calibration=calibration), latency, cache=cache)


def test_cached_compiles_give_the_uncached_problem() -> None:
    cache = CompileCache()
    uncached = compile_with(NODES, None)
    cold = compile_with(NODES, cache)
    assert cache.last.questions_compiled > 0 and cache.last.questions_reused == 0
    warm = compile_with(NODES, cache)
    assert cache.last.questions_compiled == 0
    assert cache.last.questions_reused == cold_questions(cache, NODES)
    assert uncached.options  # the grid has something to place
    assert cold == uncached and warm == uncached


def cold_questions(cache: CompileCache, nodes: list[Node]) -> int:
    fresh = CompileCache()
    compile_with(nodes, fresh)
    return fresh.last.questions_compiled


def test_a_replan_recompiles_only_the_changed_node_class() -> None:
    cache = CompileCache()
    compile_with(NODES, cache)
    added = node("d1", "h100-sxm", count=8, region="eu-west", price=20.0, interconnect="nvlink")
    changed = [n for n in NODES if n.name != "a2"] + [added]  # one node gone, one class new
    compile_with(changed, cache)
    assert (cache.last.classes_compiled, cache.last.classes_reused) == (1, 3)
    # Exactly the questions about the new class, as a fresh cache asks them of it alone.
    assert cache.last.questions_compiled == cold_questions(cache, [added])
    assert cache.last.questions_reused > 0


def test_a_new_calibration_asks_every_question_again() -> None:
    cache = CompileCache()
    compile_with(NODES, cache)
    asked = cache.last.questions_compiled
    compile_with(NODES, cache, Calibration(grid=Correction(decode=1.3, prefill=1.2)))
    assert (cache.last.questions_compiled, cache.last.questions_reused) == (asked, 0)


def test_the_cache_is_bounded() -> None:
    cache = CompileCache(max_entries=3)
    compile_with(NODES, cache)
    compile_with(NODES, cache)
    assert cache.last.questions_reused <= 3


def _no_load_reasons(problem: Problem, w: int) -> set[tuple[float, float]]:
    """(target, network ms) of workload ``w``'s ``ttft-no-load`` rejections."""
    return {
        (float(r.reason.available), r.reason.network_ms)
        for r in problem.rejections.of(w)
        if r.reason.measure == "ttft-no-load"
    }


def test_a_ttft_rejection_names_its_own_target_and_network() -> None:
    # Alike in kind, the same 25 ms budget left: 35 ms 10 ms away, 145 ms 120 ms away.
    near = workload("near", ttft_ms=35, itl_ms=200)
    far = workload("far", ttft_ms=145, itl_ms=200, sources=(("us-east", 1.0),))
    nodes = [node("a1", "rtx-4090", region="eu-west")]
    latency = FakeLatency({"a1": "eu-west"}, default_ms=120)
    cache = CompileCache()
    for asked in ([near, far], [far]):  # in one compile, then from the cache in the next
        inputs = PlannerInputs(nodes, asked, builtin_catalog())
        problem = compile_problem(inputs, make_predictor(), latency, cache=cache)
        assert _no_load_reasons(problem, len(asked) - 1) == {(145.0, 120.0)}
    alone = PlannerInputs(nodes, [near], builtin_catalog())
    problem = compile_problem(alone, make_predictor(), latency, cache=cache)
    assert _no_load_reasons(problem, 0) == {(35.0, 10.0)}
