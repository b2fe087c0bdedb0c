"""Putting the parts together for a plan: load specs, build the network lookup and the
predictor, run the planner. Shared by the CLI (and the HTTP API) so both plan the same way.

``load_planning_inputs`` is the CLI's load (plan, explain, validate): on top of the loader's
checks it refuses inputs that mean nothing — no node or no workload (naming the files read and
skipped) and a traffic region that no node, probe or the built-in region table knows.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from gridplace.planner import OptionPredictor, PlannerInputs, compile_problem
from gridplace.planner.fixes import (
    DEFAULT_BUDGET_S,
    find_fixes,
    fix_budget,
    search_for,
    with_fixes,
)
from gridplace.planner.network import NetworkLatency
from gridplace.planner.planning import PlanResult, Strategy, make_plan
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Problem
from gridplace.planner.recalibrate import Calibration
from gridplace.planner.shards import ShardCount, shard_count
from gridplace.planner.solve import SolverSettings
from gridplace.specs import Node, PlacementPlan, SpecBundle, SpecError, SpecIssue, load_bundle
from gridplace.specs.fixes import Fix
from gridplace.topology import Topology
from gridplace.topology.regions import builtin_regions


@dataclass(frozen=True)
class PlanRequest:
    nodes: Sequence[Path]
    workloads: Sequence[Path]
    probes: Sequence[Path]
    previous: Path | None = None
    strategy: Strategy = Strategy.CPSAT
    time_limit_s: float = 10.0
    budget_per_hour: float | None = None
    seed: int = 0
    headroom: float | None = None  # None: each workload booked as its traffic implies
    fix_budget_s: float | None = None  # checking fixes (None: fix_budget; 0: none)
    workers: int = 1  # local processes for a plan's independent parts (or shards)
    ray_address: str | None = None  # or the Ray cluster that solves them
    shards: ShardCount = 1  # cut the grid into this many shards ("auto": by its size)


def load_previous(path: Path) -> PlacementPlan:
    plans = load_bundle([path]).plans
    if len(plans) != 1:
        raise SpecError(
            [SpecIssue(f"expected one PlacementPlan, found {len(plans)}", file=str(path))]
        )
    return plans[0]


def _planner_parts(
    bundle: SpecBundle,
    previous: PlacementPlan | None,
    budget_per_hour: float | None,
    headroom: float | None = None,
    calibration: Calibration | None = None,
) -> tuple[PlannerInputs, OptionPredictor, NetworkLatency]:
    latency = latency_for(bundle)(bundle.nodes)
    inputs = PlannerInputs(
        nodes=bundle.nodes,
        workloads=bundle.workloads,
        catalog=bundle.catalog,
        previous=previous,
        budget_per_hour=budget_per_hour,
        headroom=headroom,
    )
    return inputs, make_predictor(bundle.profiles, bundle.catalog, calibration), latency


def latency_for(bundle: SpecBundle) -> Callable[[Sequence[Node]], NetworkLatency]:
    """The network lookup for a list of nodes under the bundle's probes (a fix adds nodes)."""
    regions = {s.region for w in bundle.workloads for s in w.spec.traffic.sources}

    def lookup(nodes: Sequence[Node]) -> NetworkLatency:
        return NetworkLatency(Topology.build(nodes, bundle.probes).latency_lookup(regions))

    return lookup


def compile_bundle(bundle: SpecBundle) -> Problem:
    """The compiled problem (options and rejections), without solving: what validate checks."""
    return compile_problem(*_planner_parts(bundle, None, None))


def bundle_fixes(
    bundle: SpecBundle, workloads: Sequence[str], budget_s: float = DEFAULT_BUDGET_S
) -> dict[str, list[Fix]]:
    """Fixes tried and found to place each of ``workloads`` (what validate shows as hints)."""
    inputs, predictor, latency = _planner_parts(bundle, None, None)
    search = search_for(predictor, latency_for(bundle), budget_s)
    return {name: find_fixes(inputs, name, search, latency) for name in workloads}


def plan_bundle(
    bundle: SpecBundle,
    strategy: Strategy = Strategy.CPSAT,
    settings: SolverSettings | None = None,
    previous: PlacementPlan | None = None,
    budget_per_hour: float | None = None,
    progress: Callable[[str], None] | None = None,
    headroom: float | None = None,
    calibration: Calibration | None = None,
    fix_budget_s: float | None = None,
    shards: ShardCount = 1,
) -> PlanResult:
    """Plan an already loaded bundle (the API's path: specs arrive in a request body), with
    learned corrections when given; a cpsat plan's unplaced workloads get fixes that were
    tried (``fix_budget_s`` for all the checks, by default ``fix_budget``; 0: none; a sharded
    plan: none, each check plans the whole grid). ``shards``: ``sharding_issue``'s rules."""
    count = shard_count(shards, len(bundle.nodes))
    issue = sharding_issue(count, strategy, budget_per_hour)
    if issue is not None:
        raise SpecError([issue])
    inputs, predictor, latency = _planner_parts(
        bundle, previous, budget_per_hour, headroom, calibration
    )
    make = partial(make_predictor, bundle.profiles, bundle.catalog, calibration)
    result = make_plan(
        inputs, predictor, latency, strategy, settings, progress=progress, shards=count,
        make_predictor=make,
    )  # fmt: skip
    budget_s = fix_budget(settings) if fix_budget_s is None else fix_budget_s
    if strategy is not Strategy.CPSAT or budget_s <= 0 or count > 1:
        return result
    if progress and result.plan.status and result.plan.status.unplaced:
        progress("trying fixes for the unplaced workloads")
    search = search_for(predictor, latency_for(bundle), budget_s, result.plan)
    return replace(result, plan=with_fixes(result.plan, inputs, search, latency))


def sharding_issue(
    count: int, strategy: Strategy, budget_per_hour: float | None
) -> SpecIssue | None:
    """Why a plan cannot be cut into ``count`` shards: a budget spans every workload, and
    shards are solved by cpsat. None: it can (one shard always can)."""
    if count <= 1:
        return None
    if budget_per_hour is not None:
        return SpecIssue(
            f"a budget (--budget / budgetPerHour) spans every workload and cannot be split over "
            f"{count} shards (--shards / shards): plan with one shard, or without a budget"
        )
    if strategy is not Strategy.CPSAT:
        return SpecIssue(
            f"shards (--shards / shards: {count}) are solved by cpsat, not {strategy.value}: "
            "use --strategy cpsat or one shard"
        )
    return None


def load_planning_inputs(
    paths: Sequence[Path], warn: Callable[[str], None] | None = None
) -> SpecBundle:
    """``load_bundle``, then ``planning_input_issues``: SpecError listing every problem.
    ``warn`` hears of each file skipped (not YAML, not a regular file)."""
    bundle = load_bundle(paths)
    if warn is not None and bundle.inputs is not None:
        for file, why in bundle.inputs.skipped.items():
            warn(f"skipped {file}: {why}")
    issues = planning_input_issues(bundle)
    if issues:
        raise SpecError(issues)
    return bundle


def planning_input_issues(bundle: SpecBundle) -> list[SpecIssue]:
    """No node or no workload (with the files read and skipped); unknown traffic regions."""
    issues: list[SpecIssue] = []
    files = bundle.inputs.describe() if bundle.inputs else "no file"
    for kind, found in (("Node", bundle.nodes), ("InferenceWorkload", bundle.workloads)):
        if not found:
            issues.append(SpecIssue(f"no {kind} document in the inputs: {files}"))
    known = set(builtin_regions().regions) | {node.spec.region for node in bundle.nodes}
    for probes in bundle.probes:
        for sample in probes.spec.samples:
            ends = (sample.source, sample.target)
            known |= {e.removeprefix("region/") for e in ends if e.startswith("region/")}
    for workload in bundle.workloads:
        file, document = bundle.origins.get(("InferenceWorkload", workload.name), (None, None))
        for position, source in enumerate(workload.spec.traffic.sources):
            if source.region in known:
                continue
            near = difflib.get_close_matches(source.region, sorted(known), n=3, cutoff=0.5)
            hint = (
                f"did you mean: {', '.join(near)}?"
                if near
                else f"known: {', '.join(sorted(known)[:8])}{', ...' * (len(known) > 8)}"
            )
            issues.append(
                SpecIssue(
                    f"traffic region {source.region!r} is not the region of any node, probe or "
                    f"built-in region; {hint}",
                    file=file,
                    document=document,
                    field=f"spec.traffic.sources[{position}].region",
                )
            )
    return issues


def run_plan(
    request: PlanRequest,
    progress: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> PlanResult:
    """Load every input (all problems reported together), then plan."""
    bundle = load_planning_inputs([*request.nodes, *request.workloads, *request.probes], warn)
    previous = load_previous(request.previous) if request.previous else None
    settings = SolverSettings(
        time_limit_s=request.time_limit_s,
        random_seed=request.seed,
        workers=request.workers,
        ray_address=request.ray_address,
    )
    return plan_bundle(
        bundle,
        request.strategy,
        settings,
        previous,
        request.budget_per_hour,
        progress,
        headroom=request.headroom,
        fix_budget_s=request.fix_budget_s,
        shards=request.shards,
    )
