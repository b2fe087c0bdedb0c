"""Splitting one model's layers over nodes as pipelines, for maximum served throughput.

The CP-SAT model works on node *classes* (nodes of one GPU kind in one region are
interchangeable) instead of single nodes, which removes the node symmetry that makes a per-node
MILP slow:

- ``count[c, s, k]``: how many nodes of class ``c`` hold layers ``[s, s + k)`` (a node's
  capacity depends on how many layers it holds: more layers, less KV room, smaller batches);
- ``flow[r, l]``: tokens/s at layer ``l`` in region ``r``; over all regions it is the served
  throughput, at every layer (every token passes each layer once);
- coverage: the capacity of region ``r``'s stages over layer ``l`` is at least ``flow[r, l]``.
  With partial inference (a stage may take tokens mid-range, as Helix allows) covering every
  layer is enough for the flow; the exact max flow checks it afterwards;
- with several regions: a region is passed once, in one run of layers, and tokens change region
  only where a stage ends, over at most ``link x (stages ending there) x (stages over the next
  layer in the other region)`` (one link per pair), from stages with the capacity to send them.

The hint is the best single *lane* over region orders and levels (``best_lane``: each node holds
the most layers at which it still serves the level; entering a region, as many nodes in parallel
as the links need); when the solver cannot even complete it in time, the lane is the answer.
``disaggregate`` hands the counts to nodes; ``swap_within_classes`` then exchanges nodes of one
class against an exact score, since the model sees a class's links as one mean figure.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from ortools.sat.python import cp_model

FLOW_SCALE = 100  # flows are integers in CP-SAT: 0.01 token/s resolution


@dataclass(frozen=True)
class NodeClass:
    """Interchangeable nodes: one GPU kind in one region."""

    name: str
    region: str
    nodes: tuple[int, ...]  # node indices in the caller's numbering
    capacity_tokens_per_s: tuple[float, ...]  # [k - 1]: a node holding k layers

    @property
    def max_layers(self) -> int:
        return len(self.capacity_tokens_per_s)


@dataclass(frozen=True)
class SplitProblem:
    num_layers: int
    classes: tuple[NodeClass, ...]
    # tokens/s one node-to-node link carries between two regions (both orders); a missing pair
    # has no links at all. Within a region, the pair (r, r).
    link_tokens_per_s: dict[tuple[str, str], float]


@dataclass(frozen=True)
class SplitResult:
    tokens_per_s: float  # the model's objective (a region pair's links at their mean figure)
    bound_tokens_per_s: float
    status: str
    seconds: float
    layers: dict[int, tuple[int, int]]  # node -> [first, last) layer; unused nodes absent


def solve_split(
    problem: SplitProblem, time_limit_s: float = 60.0, workers: int = 2, seed: int = 0
) -> SplitResult:
    """Maximize served tokens/s over layer ranges per node (see the module)."""
    started = time.perf_counter()
    m = cp_model.CpModel()
    num_layers = problem.num_layers
    total_cap = sum(len(c.nodes) * max(c.capacity_tokens_per_s) for c in problem.classes)
    top = int(total_cap * FLOW_SCALE) + 1
    count: dict[tuple[int, int, int], cp_model.IntVar] = {}
    for ci, c in enumerate(problem.classes):
        for k in range(1, min(c.max_layers, num_layers) + 1):
            for s in range(0, num_layers - k + 1):
                count[ci, s, k] = m.new_int_var(0, len(c.nodes), f"n{ci}_{s}_{k}")
        m.add(sum(n for (cj, _, _), n in count.items() if cj == ci) <= len(c.nodes))
    served = m.new_int_var(0, top, "served")
    regions = sorted({c.region for c in problem.classes})
    layer_flow = {
        (r, layer): m.new_int_var(0, top, f"phi{r}_{layer}")
        for r in regions
        for layer in range(num_layers)
    }
    for layer in range(num_layers):
        m.add(sum(layer_flow[r, layer] for r in regions) == served)
        for r in regions:
            m.add(_covering(problem, count, r, layer, capacity=True) >= layer_flow[r, layer])
    if len(regions) > 1:
        _one_segment_per_region(m, problem, count, regions, layer_flow, top)
        for b in range(1, num_layers):
            _crossings(m, problem, count, regions, layer_flow, b, top)
    lane_level, hint = best_lane(problem)
    for key, n in count.items():
        m.add_hint(n, hint.get(key, 0))
    # the flows too: the lane serves its level at every layer, in the region that holds it
    lane_served = int(lane_level * FLOW_SCALE) - 1 if hint else 0
    m.add_hint(served, max(0, lane_served))
    lane_region = {
        layer: problem.classes[ci].region for (ci, s, k) in hint for layer in range(s, s + k)
    }
    for (r, layer), v in layer_flow.items():
        m.add_hint(v, max(0, lane_served) if lane_region.get(layer) == r else 0)
    result = _solve(m, problem, served, count, time_limit_s, workers, seed, started)
    if result.tokens_per_s < lane_level - 2 / FLOW_SCALE:  # the hint's rounding aside
        # the solver did not even complete its hint in time: the lane is the answer
        return dataclasses.replace(
            result, tokens_per_s=lane_level, layers=disaggregate(problem, hint), status="LANE"
        )
    return result


def best_lane(problem: SplitProblem) -> tuple[float, dict[tuple[int, int, int], int]]:
    """The best single lane over region orders and levels (tokens/s, counts): the hint."""
    regions = sorted({c.region for c in problem.classes})
    levels = sorted({cap for c in problem.classes for cap in c.capacity_tokens_per_s}, reverse=True)
    best: tuple[float, dict[tuple[int, int, int], int]] = (0.0, {})
    for order in itertools.permutations(regions):
        low, high = 0, len(levels) - 1  # levels[i] feasible is monotone in i (lower is easier)
        found = None
        while low <= high:
            mid = (low + high) // 2
            lane = _lane(problem, order, levels[mid])
            if lane is None:
                low = mid + 1
            else:
                found, high = (levels[mid], lane), mid - 1
        if found is not None and found[0] > best[0]:
            best = found
    return best


def _lane(
    problem: SplitProblem, order: tuple[str, ...], level: float
) -> dict[tuple[int, int, int], int] | None:
    """One pipeline at ``level`` tokens/s through the regions in ``order``, or None.

    Each node holds the most layers at which it still serves ``level``; entering a region, as
    many of its nodes as the links need start together, in parallel.
    """
    counts: dict[tuple[int, int, int], int] = defaultdict(int)
    layer = 0
    for position, region in enumerate(order):
        nodes = sorted(
            (
                (ci, _most_layers(c, level))
                for ci, c in enumerate(problem.classes)
                if c.region == region
                for _ in c.nodes
            ),
            key=lambda node: -node[1],
        )
        nodes = [node for node in nodes if node[1] > 0]
        if position > 0 and nodes:
            link = _pair(problem, order[position - 1], region)
            width = max(1, math.ceil(level / link)) if link > 0 else len(nodes) + 1
            if width > len(nodes):
                return None
            k = min(min(node[1] for node in nodes[:width]), problem.num_layers - layer)
            for ci, _ in nodes[:width]:
                counts[ci, layer, k] += 1
            layer += k
            nodes = nodes[width:]
        for ci, most in nodes:
            if layer >= problem.num_layers:
                break
            k = min(most, problem.num_layers - layer)
            counts[ci, layer, k] += 1
            layer += k
        if layer >= problem.num_layers:
            return dict(counts)
    return None


def _most_layers(c: NodeClass, level: float) -> int:
    return max(
        (k for k in range(1, c.max_layers + 1) if c.capacity_tokens_per_s[k - 1] >= level),
        default=0,
    )


def _covering(
    problem: SplitProblem,
    count: dict[tuple[int, int, int], cp_model.IntVar],
    region: str,
    layer: int,
    capacity: bool,
) -> cp_model.LinearExpr:
    """Capacity (or the number of nodes) of a region's stages over ``layer``."""
    terms = []
    for (ci, s, k), n in count.items():
        c = problem.classes[ci]
        if c.region == region and s <= layer < s + k:
            terms.append(int(c.capacity_tokens_per_s[k - 1] * FLOW_SCALE) * n if capacity else n)
    return cp_model.LinearExpr.sum(terms)


def _one_segment_per_region(
    m: cp_model.CpModel,
    problem: SplitProblem,
    count: dict[tuple[int, int, int], cp_model.IntVar],
    regions: list[str],
    layer_flow: dict[tuple[str, int], cp_model.IntVar],
    top: int,
) -> None:
    """Tokens pass each region once, in one contiguous run of layers.

    Slow links between regions make every crossing costly, so a pipeline that leaves a region
    does not come back; this cuts the search to region orders and segment lengths.
    """
    num_layers = problem.num_layers
    inside = {
        (r, layer): m.new_bool_var(f"in{r}_{layer}") for r in regions for layer in range(num_layers)
    }
    for layer in range(num_layers):
        m.add_exactly_one(inside[r, layer] for r in regions)
    for r in regions:
        entries = []
        for layer in range(num_layers):
            m.add(layer_flow[r, layer] <= top * inside[r, layer])
            entry = m.new_bool_var(f"enter{r}_{layer}")
            if layer == 0:
                m.add(entry == inside[r, 0])
            else:
                m.add(entry >= inside[r, layer] - inside[r, layer - 1])
            entries.append(entry)
        m.add(sum(entries) <= 1)
    for (ci, s, k), n in count.items():
        r = problem.classes[ci].region
        for layer in range(s, s + k):
            m.add(n == 0).only_enforce_if(inside[r, layer].Not())


def _crossings(
    m: cp_model.CpModel,
    problem: SplitProblem,
    count: dict[tuple[int, int, int], cp_model.IntVar],
    regions: list[str],
    layer_flow: dict[tuple[str, int], cp_model.IntVar],
    b: int,
    top: int,
) -> None:
    """Tokens change region only where a stage ends (boundary ``b``), over capped links."""
    cross = {
        (r, q): m.new_int_var(0, top, f"x{r}_{q}_{b}")
        for r in regions
        for q in regions
        if r != q and _pair(problem, r, q) > 0
    }
    for r in regions:
        into = [x for (_, q), x in cross.items() if q == r]
        out = [x for (a, _), x in cross.items() if a == r]
        m.add(layer_flow[r, b] - layer_flow[r, b - 1] == sum(into) - sum(out))
        # tokens leave r only from its stages ending at b, at most their capacity
        ending_capacity = [
            int(problem.classes[ci].capacity_tokens_per_s[k - 1] * FLOW_SCALE) * n
            for (ci, s, k), n in count.items()
            if problem.classes[ci].region == r and s + k == b
        ]
        m.add(sum(out) <= sum(ending_capacity))
    for (r, q), x in cross.items():
        cap = int(_pair(problem, r, q) * FLOW_SCALE)
        enders = [
            n for (ci, s, k), n in count.items() if problem.classes[ci].region == r and s + k == b
        ]
        # one link from each of r's stages ending at b to each of q's stages over layer b
        most = sum(len(c.nodes) for c in problem.classes)
        senders = m.new_int_var(0, most, f"e{r}_{q}_{b}")
        takers = m.new_int_var(0, most, f"c{r}_{q}_{b}")
        links = m.new_int_var(0, most * most, f"l{r}_{q}_{b}")
        m.add(senders == sum(enders))
        m.add(takers == _covering(problem, count, q, b, capacity=False))
        m.add_multiplication_equality(links, [senders, takers])
        m.add(x <= cap * links)


def _pair(problem: SplitProblem, r: str, q: str) -> float:
    return problem.link_tokens_per_s.get((r, q), problem.link_tokens_per_s.get((q, r), 0.0))


def _solve(
    m: cp_model.CpModel,
    problem: SplitProblem,
    served: cp_model.IntVar,
    count: dict[tuple[int, int, int], cp_model.IntVar],
    time_limit_s: float,
    workers: int,
    seed: int,
    started: float,
) -> SplitResult:
    m.maximize(served)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SplitResult(0.0, 0.0, solver.status_name(status), time.perf_counter() - started, {})
    counts = {key: solver.value(v) for key, v in count.items() if solver.value(v) > 0}
    return SplitResult(
        tokens_per_s=solver.value(served) / FLOW_SCALE,
        bound_tokens_per_s=solver.best_objective_bound / FLOW_SCALE,
        status=solver.status_name(status),
        seconds=time.perf_counter() - started,
        layers=disaggregate(problem, counts),
    )


def disaggregate(
    problem: SplitProblem, counts: dict[tuple[int, int, int], int]
) -> dict[int, tuple[int, int]]:
    """Hand each class's stages to its nodes in order: node -> [first, last) layer."""
    layers: dict[int, tuple[int, int]] = {}
    for ci, c in enumerate(problem.classes):
        free = list(c.nodes)
        for (cj, s, k), n in sorted(counts.items()):
            if cj != ci:
                continue
            for _ in range(n):
                layers[free.pop(0)] = (s, s + k)
    return layers


def swap_within_classes(
    problem: SplitProblem,
    layers: dict[int, tuple[int, int]],
    score: Callable[[dict[int, tuple[int, int]]], float],
) -> dict[int, tuple[int, int]]:
    """Exchange the ranges of two nodes of one class while ``score`` (an exact evaluation with
    every link's own figure) improves: the model sees a class's links as one mean figure."""
    best, best_score = dict(layers), score(layers)
    improved = True
    while improved:
        improved = False
        for c in problem.classes:
            for a, b in itertools.combinations(c.nodes, 2):
                if best.get(a) == best.get(b):
                    continue
                trial = dict(best)
                trial.pop(a, None)
                trial.pop(b, None)
                if a in best:
                    trial[b] = best[a]
                if b in best:
                    trial[a] = best[b]
                trial_score = score(trial)
                if trial_score > best_score + 1e-9:
                    best, best_score, improved = trial, trial_score, True
    return best
