"""Plans: submit workloads and get a plan, read plans back, explain them, validate specs, replan.

A submission's body is the workloads (YAML, one or more documents, or JSON: a document or a list
of them), optionally with ModelArchitecture, GPUModel and PerformanceProfile documents; the nodes
and probes are the stored ones. The answer is the PlacementPlan, 200 even when a workload could
not be placed (its reasons are in ``status.unplaced``). ``expectedGeneration`` makes the write
conditional: if the latest plan is not that generation, 409 and nothing is stored. ``dryRun=true``
answers the plan the submission would get now and stores nothing (viewer tokens may ask).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from gridplace.api.bodies import read_documents
from gridplace.api.deps import (
    AdminDep,
    PrincipalDep,
    ReplannerDep,
    ServiceDep,
    SettingsDep,
    StateDep,
    StoreDep,
    run_planning,
)
from gridplace.api.errors import Forbidden, InvalidRequest, NotFound
from gridplace.api.models import (
    BASE_GENERATION_HEADER,
    ExplanationResponse,
    PlanListResponse,
    PlanSummaryResponse,
    ReplanResponse,
    ValidationResponse,
    WorkloadCheckResponse,
    stored_explanation,
)
from gridplace.api.roles import DRY_RUN_PARAM
from gridplace.api.routes import AUTH_ERRORS, errors, raw_body
from gridplace.api.service import PLAN_INPUT_KINDS, VALIDATE_KINDS, PlanOptions
from gridplace.api.store import PlanRecord, PlanSummary
from gridplace.api.wiring import sharding_issue
from gridplace.planner.planning import Strategy
from gridplace.planner.shards import MAX_SHARDS, ShardCount
from gridplace.specs import PlacementPlan

router = APIRouter(prefix="/v1", tags=["plans"])
SHARDS_PATTERN = r"^(auto|[1-9][0-9]?)$"


def shard_request(text: str) -> ShardCount:
    """The ``shards`` query value (its pattern checked): a count 1-MAX_SHARDS, or auto."""
    if text == "auto":
        return "auto"
    if int(text) > MAX_SHARDS:
        raise InvalidRequest.field("shards", f"{text} is over the limit of {MAX_SHARDS}")
    return int(text)


Generation = Annotated[int, Path(ge=1, le=2**31 - 1, description="A plan generation.")]


def _summary(summary: PlanSummary) -> PlanSummaryResponse:
    return PlanSummaryResponse(
        generation=summary.generation,
        name=summary.name,
        created_at=summary.created_at,
        trigger=summary.trigger,
        reasons=summary.reasons,
        replicas=summary.replicas,
        unplaced=summary.unplaced,
        compile_seconds=summary.compile_s,
        solve_seconds=summary.solve_s,
    )


def _plan_response(record: PlanRecord, response: Response) -> PlacementPlan:
    response.headers["ETag"] = f'"{record.generation}"'
    response.headers["Location"] = f"/v1/plans/{record.generation}"
    return record.plan


@router.post(
    "/plans",
    response_model=PlacementPlan,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 409, 413),
    openapi_extra=raw_body("InferenceWorkload documents (and catalog additions).", array=True),
)
async def submit_plan(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    state: StateDep,
    service: ServiceDep,
    settings: SettingsDep,
    expected_generation: Annotated[
        int | None,
        Query(
            alias="expectedGeneration",
            ge=0,
            le=2**31 - 1,
            description="Store the plan only if the latest generation is this one (0: none).",
        ),
    ] = None,
    strategy: Annotated[Strategy, Query(description="cpsat, greedy or capacity-only.")] = (
        Strategy.CPSAT
    ),
    time_limit_s: Annotated[
        float | None,
        Query(alias="timeLimitSeconds", gt=0, le=3600, description="Solver time limit."),
    ] = None,
    budget_per_hour: Annotated[
        float | None, Query(alias="budgetPerHour", ge=0, le=1e9, description="USD per hour.")
    ] = None,
    shards: Annotated[
        str,
        Query(
            pattern=SHARDS_PATTERN,
            description="Cut the grid into this many shards planned apart (1-64, or auto: one "
            "per ~10,000 nodes, a smaller grid planned whole): each workload is placed on its "
            "shard's nodes, then the demand left unmet on the other shards' leftover capacity. "
            "Not with budgetPerHour, and cpsat only.",
        ),
    ] = "1",
    dry_run: Annotated[
        bool,
        Query(
            alias=DRY_RUN_PARAM,
            description="Answer the plan this submission would get now (from the latest "
            "generation, with its options), without storing or publishing it.",
        ),
    ] = False,
) -> PlacementPlan:
    """Plan the submitted workloads on the registered grid and store the next generation."""
    if not dry_run and not principal.is_admin:  # roles.py lets viewers in for dry runs only
        raise Forbidden("only the admin token stores plans; ask for ?dryRun=true")
    if time_limit_s is not None and time_limit_s > settings.max_plan_time_limit_s:
        raise InvalidRequest.field(
            "timeLimitSeconds",
            f"{time_limit_s:g} s is over this server's limit of "
            f"{settings.max_plan_time_limit_s:g} s",
        )
    count = shard_request(shards)
    issue = sharding_issue(count if isinstance(count, int) else 1, strategy, budget_per_hour)
    if issue is not None:
        raise InvalidRequest.field("shards", issue.message)
    documents = await read_documents(
        request, settings.max_documents, PLAN_INPUT_KINDS, settings.max_list_items
    )
    options = PlanOptions(
        strategy=strategy,
        time_limit_s=time_limit_s or settings.plan_time_limit_s,
        budget_per_hour=budget_per_hour,
        shards=count,
    )
    if dry_run:
        outcome = await run_planning(state, service.dry_run, documents, options)
        response.headers[BASE_GENERATION_HEADER] = str(outcome.base_generation)
        return outcome.plan
    record = await run_planning(
        state, service.compute, documents, options, "submitted", [], expected_generation
    )
    return _plan_response(record, response)


@router.get(
    "/plans",
    response_model=PlanListResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS),
)
def list_plans(
    _: PrincipalDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Only generations below this.")
    ] = None,
) -> PlanListResponse:
    """Plan generations, newest first."""
    return PlanListResponse(items=[_summary(s) for s in store.plans(limit, before)])


@router.get(
    "/plans/latest",
    response_model=PlacementPlan,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404),
)
def latest_plan(_: PrincipalDep, store: StoreDep, response: Response) -> PlacementPlan:
    """The plan in force."""
    record = store.latest_plan()
    if record is None:
        raise NotFound("no plan yet: submit workloads with POST /v1/plans")
    return _plan_response(record, response)


@router.get(
    "/plans/{generation}",
    response_model=PlacementPlan,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404),
)
def get_plan(
    generation: Generation, _: PrincipalDep, store: StoreDep, response: Response
) -> PlacementPlan:
    record = store.plan(generation)
    if record is None:
        raise NotFound(f"no plan generation {generation}")
    return _plan_response(record, response)


@router.get(
    "/plans/{generation}/explanation",
    response_model=ExplanationResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404),
)
def explain_plan(generation: Generation, _: PrincipalDep, store: StoreDep) -> ExplanationResponse:
    """Per workload: placed or not, with the planner's reasons (numbers) and hints."""
    record = store.plan(generation)
    if record is None:
        raise NotFound(f"no plan generation {generation}")
    return ExplanationResponse(
        generation=generation,
        workloads=[stored_explanation(entry) for entry in record.explanation],
    )


@router.post(
    "/validate",
    response_model=ValidationResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 413),
    openapi_extra=raw_body(
        "Workloads, optionally with Node and LatencyProbes documents (default: the stored ones).",
        array=True,
    ),
)
async def validate(
    request: Request, _: PrincipalDep, state: StateDep, service: ServiceDep, settings: SettingsDep
) -> ValidationResponse:
    """``gridplace validate`` over HTTP. Documents that are not valid are a 422 naming each field
    (like every endpoint); valid ones get 200 with whether each workload can be placed at all."""
    documents = await read_documents(
        request, settings.max_documents, VALIDATE_KINDS, settings.max_list_items
    )
    outcome = await run_planning(state, service.validate, documents)
    return ValidationResponse(
        valid=outcome.valid,
        workloads=[
            WorkloadCheckResponse(name=c.workload, placeable=c.ok, reasons=c.reasons)
            for c in outcome.checks
        ],
    )


@router.post(
    "/replan",
    response_model=ReplanResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 409),
)
async def replan(
    _: AdminDep,
    state: StateDep,
    replanner: ReplannerDep,
    only_if_changed: Annotated[
        bool,
        Query(
            alias="onlyIfChanged",
            description="Run the periodic change check instead of replanning unconditionally.",
        ),
    ] = False,
) -> ReplanResponse:
    """A new generation from the latest plan's inputs on today's grid, with minimal moves."""
    work = replanner.check if only_if_changed else replanner.replan
    outcome = await run_planning(state, work)
    record = outcome.record
    return ReplanResponse(
        replanned=outcome.replanned,
        reasons=outcome.reasons,
        generation=record.generation if record else None,
        skipped=outcome.skipped,
        plan=record.plan if record else None,
    )
