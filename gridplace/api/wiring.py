"""Putting the parts together for a plan: load specs, build the network lookup and the
predictor, run the planner. Shared by the CLI (and the HTTP API) so both plan the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gridplace.planner.compile import (
    DEFAULT_HEADROOM,
    PlannerInputs,
    Predictor,
    compile_problem,
)
from gridplace.planner.network import NetworkLatency
from gridplace.planner.planning import PlanResult, Strategy, make_plan
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Problem
from gridplace.planner.recalibrate import Calibration
from gridplace.planner.solve import SolverSettings
from gridplace.specs import PlacementPlan, SpecBundle, SpecError, SpecIssue, load_bundle
from gridplace.topology import Topology


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
    headroom: float = DEFAULT_HEADROOM


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
    headroom: float = DEFAULT_HEADROOM,
    calibration: Calibration | None = None,
) -> tuple[PlannerInputs, Predictor, NetworkLatency]:
    regions = {s.region for w in bundle.workloads for s in w.spec.traffic.sources}
    topology = Topology.build(bundle.nodes, bundle.probes)
    latency = NetworkLatency(topology.latency_lookup(regions))
    inputs = PlannerInputs(
        nodes=bundle.nodes,
        workloads=bundle.workloads,
        catalog=bundle.catalog,
        previous=previous,
        budget_per_hour=budget_per_hour,
        headroom=headroom,
    )
    return inputs, make_predictor(bundle.profiles, bundle.catalog, calibration), latency


def compile_bundle(bundle: SpecBundle) -> Problem:
    """The compiled problem (options and rejections), without solving: what validate checks."""
    return compile_problem(*_planner_parts(bundle, None, None))


def plan_bundle(
    bundle: SpecBundle,
    strategy: Strategy = Strategy.CPSAT,
    settings: SolverSettings | None = None,
    previous: PlacementPlan | None = None,
    budget_per_hour: float | None = None,
    progress: Callable[[str], None] | None = None,
    headroom: float = DEFAULT_HEADROOM,
    calibration: Calibration | None = None,
) -> PlanResult:
    """Plan an already loaded bundle (the API's path: specs arrive in a request body), with
    learned corrections when given."""
    inputs, predictor, latency = _planner_parts(
        bundle, previous, budget_per_hour, headroom, calibration
    )
    return make_plan(inputs, predictor, latency, strategy, settings, progress=progress)


def run_plan(request: PlanRequest, progress: Callable[[str], None] | None = None) -> PlanResult:
    """Load every input (all problems reported together), then plan."""
    bundle = load_bundle([*request.nodes, *request.workloads, *request.probes])
    previous = load_previous(request.previous) if request.previous else None
    settings = SolverSettings(time_limit_s=request.time_limit_s, random_seed=request.seed)
    return plan_bundle(
        bundle,
        request.strategy,
        settings,
        previous,
        request.budget_per_hour,
        progress,
        headroom=request.headroom,
    )
