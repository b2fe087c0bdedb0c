"""The CP-SAT placement model: variables over a compiled ``Problem``, one function per constraint
family, and the staged objectives.

Formulation
-----------
Sets: workloads W, traffic sources S_w of each workload, GPU pools P (identical GPUs of identical
nodes), options O (workload x pool x precision x TP degree x GPU share) that survived compile.

Variables (integers):
    x[o]        replicas of option o                       0 .. what the pool could hold
    unmet[w,s]  requests/s x 1000 of source s not covered   (penalized slack: never INFEASIBLE)
    short[w]    replicas missing below replicas.min          (penalized slack)
    moved[o]    replicas the previous plan had in option o that o no longer has
    warm_starts[w,p] replicas of w added in pool p on its nodes that hold w's weights (replans)
    uncovered[w] milli-requests/s of w's demand not covered after that loss (penalized slack)
    per_node[o] replicas of option o on the fullest node of its pool (failover)
    worst_loss[w] milli-requests/s of w's capacity on the node whose loss costs it most (failover)

Constraint families (ids are stable; every constraint is named "<id>[...]" and enforced only if
the family's literal is true, so a diagnosis solve can turn families into assumptions):
    gpu-count        Hard: whole-GPU replicas (TP x GPUs) pack into each pool's nodes.
    gpu-sharing      Hard: replicas sharing a GPU (1/2, 1/4) fit in the GPU slots left; each one's
                     capacity was computed with its share of memory bandwidth and VRAM.
    vram-pool        Hard: VRAM booked in a pool stays within the pool's VRAM.
    pipeline-nodes   Hard: a node holds at most one pipeline stage; a pipeline option (x <= 1,
                     one node tuple) takes its stages' nodes out of their pools' rows
                     (``pipeline_model``) and is lost whole with any stage's node (failover).
    thermal-power    Hard: sustained draw within the pool's power budget, derated by throttling.
    demand-coverage  Hard: for every set of a workload's traffic sources, the capacity of the
                     options that meet those sources' TTFT targets + unmet >= demand x (1 +
                     headroom) (Gale's condition: exact without routing variables).
    replica-bounds   Hard: replicas <= max; replicas that carry load + short >= min.
    spread           Hard: at most maxPerDomain replicas that carry load per provider / region;
                     when replicas.min > maxPerDomain, each domain's capacity <= the spread
                     limit (maxPerDomain / replicas.min of the target, at least the largest
                     replica).
    A replica carries load when its option's capacity >= ``Problem.load_rps`` (replicas.minShare
    of the booked demand, or the largest replica when that is less); only such replicas
    count toward replicas.min, spread and failover.
    budget           Hard: total cost per hour <= the budget, when one is given.
    pinned           Hard: pinned replicas of the previous plan stay (their option keeps them).
    failover         Soft: after losing any one node that may fail, the capacity of replicas
                     that carry load - what that node held of it + uncovered >= demand x (1 +
                     headroom), for redundancy.nodeFailures 1 (every node may fail unless
                     redundancy.exemptReliability exempts it).
The families are listed once, in ``rules.RULES`` (with the compile-time rules that drop options
before the model); ``build_model`` adds them in that order.

Objectives, lexicographic, solved in stages with the earlier optimum fixed and hinted:
    1. unmet demand x priority x 2  (+ replicas short of min x priority x 1000 x 2)
       + failover capacity uncovered x priority (demand met now outranks demand after a loss)
    2. cost per hour             (USD x 10^4)
    3. replicas moved from the previous plan x 2 - replicas added where their weights are
       (a move to a warm node costs 1, to a cold one 2)
    4. preference: precision rank x 1000 + ITL and TTFT as per-mille of their targets
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from gridplace.planner import pipeline_model as pipes
from gridplace.planner.core import (
    RATE_SCALE,
    SLOTS_PER_GPU,
    power_budget_watts,
    power_draw_watts,
)
from gridplace.planner.objectives import COST_SCALE, StagedModel, build_objectives, scaled_cost
from gridplace.planner.objectives import weighted as _weighted
from gridplace.planner.problem import Option, Problem
from gridplace.planner.rules import MODEL_RULES, implements

VRAM_SCALE = 100  # GiB -> integer 1/100 GiB
MAX_SOURCE_GROUPS = 8  # 255 coverage rows per workload at most


@dataclass
class PlacementModel:
    """The CP-SAT model and its variables, with the family literals used as switches."""

    problem: Problem
    model: cp_model.CpModel = field(default_factory=StagedModel)
    x: dict[int, cp_model.IntVar] = field(default_factory=dict)
    unmet: dict[tuple[int, str], cp_model.IntVar] = field(default_factory=dict)
    short: dict[int, cp_model.IntVar] = field(default_factory=dict)
    moved: dict[int, cp_model.IntVar] = field(default_factory=dict)
    warm_starts: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    uncovered: dict[int, cp_model.IntVar] = field(default_factory=dict)
    per_node: dict[int, cp_model.IntVar] = field(default_factory=dict)
    worst_loss: dict[int, cp_model.IntVar] = field(default_factory=dict)
    enforce: dict[str, cp_model.IntVar] = field(default_factory=dict)
    objectives: list[tuple[str, cp_model.LinearExprT]] = field(default_factory=list)
    tight_bounds: bool = True

    @property
    def weighs_moves(self) -> bool:
        """Whether the moves objective can differ between plans (previous replicas with an
        option, or nodes holding a workload's weights)."""
        return bool(self.moved or self.warm_starts)

    def owners(self) -> dict[int, int]:
        """The workload each variable belongs to, by proto index (family literals belong to
        none): a workload's replica counts and the slacks and counters of its own rows."""
        option_workload = {o.index: o.workload for o in self.problem.options}
        owned: dict[int, int] = {}
        for by_option in (self.x, self.moved, self.per_node):
            for option, var in by_option.items():
                owned[var.index] = option_workload[option]
        for (workload, _), var in (*self.unmet.items(), *self.warm_starts.items()):
            owned[var.index] = workload
        for by_workload in (self.short, self.uncovered, self.worst_loss):
            for workload, var in by_workload.items():
                owned[var.index] = workload
        return owned

    def literal(self, family: str) -> cp_model.IntVar:
        """The enforcement literal of ``family`` (created on first use)."""
        if family not in self.enforce:
            self.enforce[family] = self.model.new_bool_var(f"enforce:{family}")
        return self.enforce[family]

    def add(
        self, family: str, name: str, constraint: cp_model.BoundedLinearExpression | bool
    ) -> None:
        """Add a named constraint guarded by its family's literal."""
        self.model.add(constraint).with_name(f"{family}[{name}]").only_enforce_if(
            self.literal(family)
        )

    def demand_milli(self, workload: int, share: float) -> int:
        return math.ceil(self.problem.workloads[workload].booked_rps * share * RATE_SCALE)


def _sum(terms: Iterable[cp_model.LinearExprT]) -> cp_model.LinearExpr:
    """A linear sum CP-SAT builds in one node (and mypy can type)."""
    return cp_model.LinearExpr.sum(list(terms))


def _vram(option: Option) -> int:
    return math.ceil(option.vram_gib * VRAM_SCALE)


def _capacity_milli(option: Option) -> int:
    return math.floor(option.capacity_rps * RATE_SCALE)


def _upper_bound(problem: Problem, option: Option, tight: bool) -> int:
    """replicas.max, tightened to what the pool could hold unless a diagnosis needs the
    capacity to be stated only by the (switchable) gpu-count family."""
    bound = problem.workloads[option.workload].replicas_max
    if option.stages:  # a pipeline is one concrete node tuple
        return min(bound, 1)
    if not tight:
        return bound
    pool = problem.pools[option.pool]
    return min(bound, pool.node_count * (pool.gpus_per_node * SLOTS_PER_GPU // option.slots))


def build_variables(pm: PlacementModel) -> None:
    problem, model = pm.problem, pm.model
    for option in problem.options:
        bound = _upper_bound(problem, option, pm.tight_bounds)
        pm.x[option.index] = model.new_int_var(0, bound, f"x[{option.index}]")
    for workload in problem.workloads:
        for region, share in workload.sources:
            pm.unmet[(workload.index, region)] = model.new_int_var(
                0, pm.demand_milli(workload.index, share), f"unmet[{workload.index},{region}]"
            )
        pm.short[workload.index] = model.new_int_var(
            0, workload.replicas_min, f"short[{workload.index}]"
        )


# -- constraint families ------------------------------------------------------------------------


@implements("gpu-count")
def gpu_count(pm: PlacementModel) -> None:
    """Hard: whole-GPU replicas pack into each pool's nodes.

    For every TP size t used on a pool: sum of slots of replicas of size >= t <= nodes x
    floor(GPUs per node x 4 / t) x t. Slot sizes divide each other, so these rows are exactly
    the condition for packing largest-first onto concrete nodes.
    """
    for pool_index, options in pipes.options_by_pool(pm.problem).items():
        pool = pm.problem.pools[pool_index]
        node_slots = pool.gpus_per_node * SLOTS_PER_GPU
        for size in sorted({o.slots for o in options if o.slots >= SLOTS_PER_GPU}):
            large = [o for o in options if o.slots >= size]
            per_node = (node_slots // size) * size  # a pipeline's stage takes a node whole
            pm.add(
                "gpu-count",
                f"pool={pool_index},slots>={size}",
                _weighted(pm.x, large, [o.slots for o in large])
                + pipes.nodes_taken(pm, pool_index) * per_node
                <= pool.node_count * per_node,
            )


@implements("gpu-sharing")
def gpu_sharing(pm: PlacementModel) -> None:
    """Hard: replicas sharing a GPU fit in the slots whole-GPU replicas leave free.

    Each shared replica's capacity was predicted with 1/share of the GPU's memory bandwidth,
    compute and VRAM, so keeping a GPU's slots <= 4 keeps its bandwidth booked <= 100%.
    """
    for pool_index, options in pipes.options_by_pool(pm.problem).items():
        pool = pm.problem.pools[pool_index]
        per_node = pool.gpus_per_node * SLOTS_PER_GPU
        for size in sorted({o.slots for o in options if o.slots < SLOTS_PER_GPU}):
            large = [o for o in options if o.slots >= size]
            pm.add(
                "gpu-sharing",
                f"pool={pool_index},slots>={size}",
                _weighted(pm.x, large, [o.slots for o in large])
                + pipes.nodes_taken(pm, pool_index) * per_node
                <= pool.node_count * per_node,
            )


@implements("vram-pool")
def vram_pool(pm: PlacementModel) -> None:
    """Hard: the VRAM booked on a pool stays within the pool's total VRAM."""
    for pool_index, options in pipes.options_by_pool(pm.problem).items():
        pool = pm.problem.pools[pool_index]
        total = math.floor(pool.memory_gib * VRAM_SCALE) * pool.node_count * pool.gpus_per_node
        pm.add(
            "vram-pool",
            f"pool={pool_index}",
            _weighted(pm.x, options, [_vram(o) * o.tensor_parallel for o in options])
            + pipes.stage_vram(pm, pool_index)
            <= total,
        )


@implements("thermal-power")
def thermal_power(pm: PlacementModel) -> None:
    """Hard: sustained power draw within the pool's budget, derated by its throttle ratio.

    Budget = GPUs x TDP x max(0.5, 1 - throttle ratio): a card capped X of the time cannot
    sustain its nameplate draw; a replica draws TDP x its GPU fraction at planned load.
    """
    for pool_index, options in pipes.options_by_pool(pm.problem).items():
        budget = power_budget_watts(pm.problem.pools[pool_index])
        if budget is None:
            continue
        pm.add(
            "thermal-power",
            f"pool={pool_index}",
            _weighted(pm.x, options, [power_draw_watts(o.power_watts) for o in options])
            + pipes.stage_draw(pm, pool_index)
            <= budget,
        )


@implements("demand-coverage")
def demand_coverage(pm: PlacementModel) -> None:
    """Hard: every group of traffic sources gets the capacity of the options that can serve it.

    For each workload and each non-empty set S of its sources (Gale's supply-demand theorem:
    a routing of every source's demand onto options that meet its TTFT target exists iff this
    holds for every S):  sum of capacity of options serving any source in S + sum of unmet in S
    >= demand of S x (1 + headroom). With one source this is the plain coverage row; no routing
    variables are needed. Sources served by the same options are merged first; past
    ``MAX_SOURCE_GROUPS`` groups only single groups and all of them together are checked.
    """
    for workload in pm.problem.workloads:
        options = pm.problem.options_of(workload.index)
        shares = dict(workload.sources)
        # Sources served by exactly the same options are interchangeable: one group each.
        by_signature: dict[frozenset[int], list[str]] = defaultdict(list)
        for region, _ in workload.sources:
            signature = frozenset(o.index for o in options if region in o.servable_sources)
            by_signature[signature].append(region)
        groups = list(by_signature.values())
        # Beyond MAX_SOURCE_GROUPS groups the subsets would explode: singletons + all of them
        # then stand in for every subset (a relaxation, and said so in the docstring).
        sizes = range(1, len(groups) + 1) if len(groups) <= MAX_SOURCE_GROUPS else (1, len(groups))
        for size in sizes:
            for chosen in itertools.combinations(groups, size):
                regions = [region for group in chosen for region in group]
                serving = [o for o in options if set(o.servable_sources) & set(regions)]
                demand = sum(pm.demand_milli(workload.index, shares[r]) for r in regions)
                pm.add(
                    "demand-coverage",
                    f"workload={workload.name},sources={'+'.join(regions)}",
                    _weighted(pm.x, serving, map(_capacity_milli, serving))
                    + _sum(pm.unmet[(workload.index, r)] for r in regions)
                    >= demand,
                )


@implements("replica-bounds")
def replica_bounds(pm: PlacementModel) -> None:
    """Hard: replicas <= replicas.max; replicas that carry load + short >= replicas.min."""
    problem = pm.problem
    for workload in problem.workloads:
        options = problem.options_of(workload.index)
        replicas = _sum(pm.x[o.index] for o in options)
        carrying = _sum(pm.x[o.index] for o in options if problem.carries_load(o))
        pm.add("replica-bounds", f"max,workload={workload.name}", replicas <= workload.replicas_max)
        pm.add(
            "replica-bounds",
            f"min,workload={workload.name}",
            carrying + pm.short[workload.index] >= workload.replicas_min,
        )


@implements("spread")
def spread(pm: PlacementModel) -> None:
    """Hard: at most maxPerDomain replicas of a workload that carry load per provider (or
    region), and when replicas.min exceeds maxPerDomain, at most ``Problem.spread_limit_rps`` of
    capacity per domain (a count alone let one domain hold nearly all of it)."""
    problem = pm.problem
    for workload in problem.workloads:
        if workload.spread_across is None or workload.spread_max_per_domain is None:
            continue
        limit_rps = problem.spread_limit_rps(workload.index)
        by_domain: dict[str, list[Option]] = defaultdict(list)
        for option in problem.options_of(workload.index):
            for domain in problem.domains_of(option, workload.spread_across):
                by_domain[domain].append(option)
        for domain, options in sorted(by_domain.items()):
            name = f"workload={workload.name},{workload.spread_across}={domain}"
            pm.add(
                "spread",
                name,
                _sum(pm.x[o.index] for o in options if problem.carries_load(o))
                <= workload.spread_max_per_domain,
            )
            if limit_rps is not None:
                pm.add(
                    "spread",
                    f"capacity,{name}",
                    _weighted(pm.x, options, map(_capacity_milli, options))
                    <= math.floor(limit_rps * RATE_SCALE),
                )


@implements("budget")
def budget(pm: PlacementModel) -> None:
    """Hard: total cost per hour <= the budget, when one is given."""
    if pm.problem.budget_per_hour is None:
        return
    pm.add(
        "budget",
        "total",
        _weighted(pm.x, pm.problem.options, map(scaled_cost, pm.problem.options))
        <= math.floor(pm.problem.budget_per_hour * COST_SCALE),
    )


@implements("pinned")
def pinned(pm: PlacementModel) -> None:
    """Hard: an option keeps at least the pinned replicas the previous plan had in it."""
    counts: dict[int, int] = defaultdict(int)
    for replica in pm.problem.previous:
        if replica.pinned and replica.option is not None:
            counts[replica.option] += 1
    for option, count in sorted(counts.items()):
        pm.add("pinned", f"option={option}", pm.x[option] >= count)


@implements("failover")
def failover(pm: PlacementModel) -> None:
    """Soft: after losing any one node that may fail, a workload keeps capacity >= its demand
    with headroom (N+1: the capacity target holds with any one such node down). Only replicas
    that carry load (``Problem.carries_load``) count, lost or left.

    Pools whose node lists are equal form a node group g of N identical nodes; every group may
    fail unless redundancy.exemptReliability is set and the group is at least that reliable
    (compared at the node classes' 0.01 resolution, rounded down). De-aggregation spreads each
    option's replicas evenly over its group, so one node holds ceil(x[o]/N) of them at most.
    With per_node[o] integer and x[o] <= N x per_node[o] (minimization makes it the ceiling),
    and worst_loss[w] >= sum over o in g of capacity[o] x per_node[o] for every group g of w:
        capacity of all options of w - worst_loss[w] + uncovered[w]
            >= demand of w x (1 + headroom)
    (one row per group with every option of w in it states the same rule densely, and the same
    search ends costlier with it: ``docs/solver-tuning.md``).
    A node never holds more than its group has, so the left side without ``uncovered`` is >= 0
    and ``uncovered`` <= demand keeps the row satisfiable. The rule is soft (``uncovered`` is
    penalized in the first objective) because a grid too small for N+1 should still serve its
    demand; the plan's status reports the exact capacity left after the worst node loss from the
    concrete placement, and warns when it falls short.
    """
    problem = pm.problem
    for workload in problem.workloads:
        options = [o for o in problem.options_of(workload.index) if problem.carries_load(o)]
        demand = pm.demand_milli(workload.index, 1.0)
        if workload.node_failures < 1 or demand <= 0 or not options:
            continue
        groups: dict[tuple[str, ...], list[Option]] = defaultdict(list)
        for option in options:
            pool = problem.pools[option.pool]
            if workload.may_fail(pool.reliability) and not option.stages:
                groups[pool.node_names].append(option)
        lost_by_group: dict[tuple[str, ...], tuple[cp_model.LinearExpr, int]] = {}
        losses: list[tuple[str, cp_model.LinearExpr, int]] = []
        for nodes, members in sorted(groups.items()):
            most_lost = 0
            for o in members:
                most = -(-_upper_bound(problem, o, pm.tight_bounds) // len(nodes))
                pm.per_node[o.index] = pm.model.new_int_var(0, most, f"per_node[{o.index}]")
                pm.add(
                    "failover",
                    f"per-node,option={o.index}",
                    pm.x[o.index] <= len(nodes) * pm.per_node[o.index],
                )
                most_lost += most * _capacity_milli(o)
            lost = _weighted(pm.per_node, members, map(_capacity_milli, members))
            losses.append((f"nodes={nodes[0]}+{len(nodes) - 1}", lost, most_lost))
            lost_by_group[nodes] = (lost, most_lost)
        losses += pipes.pipeline_losses(pm, workload.index, lost_by_group)
        if not losses:
            continue
        uncovered = pm.model.new_int_var(0, demand, f"uncovered[{workload.index}]")
        pm.uncovered[workload.index] = uncovered
        worst = pm.model.new_int_var(
            0, max(most for _, _, most in losses), f"worst_loss[{workload.index}]"
        )
        pm.worst_loss[workload.index] = worst
        for label, lost, _ in losses:
            pm.add("failover", f"node-loss,workload={workload.name},{label}", worst >= lost)
        capacity = _weighted(pm.x, options, map(_capacity_milli, options))
        pm.add(
            "failover",
            f"after-loss,workload={workload.name}",
            capacity - worst + uncovered >= demand,
        )


def build_model(
    problem: Problem, families: tuple[str, ...] | None = None, tight_bounds: bool = True
) -> PlacementModel:
    """The full model; ``families`` (ids) limits which constraint families are added."""
    pm = PlacementModel(problem, tight_bounds=tight_bounds)
    build_variables(pm)
    for rule in MODEL_RULES:
        if families is None or rule.id in families:
            rule.function(pm)
    build_objectives(pm)
    return pm
