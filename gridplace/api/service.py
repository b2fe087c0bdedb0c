"""Planning behind the HTTP API: stored nodes and probes plus submitted workloads -> a plan
generation, computed by the planner (``wiring.plan_bundle``, in the ``solver_pool``) and stored
with what it was based on.

Owns: the generation arithmetic (a plan is based on the latest generation, or on the one the
request expected), dry runs (the plan a submission would get now, neither stored nor published)
and the critical section read-latest / solve / store, which holds one of
``max_concurrent_solves`` slots (the routes wait for theirs on the event loop, in
``deps.run_planning``; this lock is what any other caller meets, for ``solve_wait_s`` at most).
Also owns the calibration's life: estimated from the stored observation windows (with
``planner.recalibrate``, the simulator's loop runs the same estimator) when new windows arrived,
stored, and handed to the planner; a plan's provenance (``options["calibration"]`` and the plan's
``calibration`` label) names the calibration it was made with.
Must not: plan by itself (the planner does), speak HTTP beyond raising ``ServiceError``s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gridplace import collector
from gridplace.api.bodies import reparse
from gridplace.api.checks import WorkloadCheck
from gridplace.api.errors import InvalidRequest, Unavailable
from gridplace.api.grid import GridView, NodeView, Pulses, judge, judge_pulses, seconds_silent
from gridplace.api.metrics import Metrics
from gridplace.api.settings import Settings
from gridplace.api.solver_pool import Solved, SolverPool
from gridplace.api.standbys import held_standbys
from gridplace.api.store import (
    CalibrationRecord,
    GenerationConflict,
    NewPlan,
    NodeRecord,
    PlanRecord,
    Store,
)
from gridplace.api.stored_grid import StoredGrid
from gridplace.api.wiring import planning_input_issues
from gridplace.planner.planning import Strategy
from gridplace.planner.recalibrate import Calibration, ModelOracle, estimate
from gridplace.planner.shards import ShardCount
from gridplace.specs import PlacementPlan, SpecBundle, SpecError, build_bundle, builtin_catalog
from gridplace.specs.loader import LoadedDocument

log = logging.getLogger("gridplace.api")

CALIBRATION_WINDOWS = 20_000  # newest windows an estimate reads
CALIBRATIONS_KEPT = 32
PROVENANCE_KEY = "calibration"  # in a plan's stored options and its labels
# Kinds a plan submission may carry; nodes and probes come from the store.
PLAN_INPUT_KINDS = ("InferenceWorkload", "ModelArchitecture", "GPUModel", "PerformanceProfile")
VALIDATE_KINDS = (*PLAN_INPUT_KINDS, "Node", "LatencyProbes")


@dataclass(frozen=True)
class PlanOptions:
    """How to plan; kept with the plan so that a replan solves the same way."""

    strategy: Strategy = Strategy.CPSAT
    time_limit_s: float = 10.0
    budget_per_hour: float | None = None
    shards: ShardCount = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "timeLimitSeconds": self.time_limit_s,
            "budgetPerHour": self.budget_per_hour,
            "shards": self.shards,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanOptions:
        return cls(
            strategy=Strategy(data.get("strategy", Strategy.CPSAT.value)),
            time_limit_s=float(data.get("timeLimitSeconds", 10.0)),
            budget_per_hour=data.get("budgetPerHour"),
            shards=data.get("shards", 1),
        )


@dataclass(frozen=True)
class Validation:
    checks: list[WorkloadCheck]

    @property
    def valid(self) -> bool:
        return all(check.ok for check in self.checks)


@dataclass(frozen=True)
class DryRun:
    """The plan a submission would get now, and the generation it would replace (0: none)."""

    plan: PlacementPlan
    base_generation: int


class PlanService:
    """Plans, replans and validation on the stored grid (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], datetime],
        started_at: datetime,
        solver: SolverPool | None = None,
    ) -> None:
        self.store = store
        self.solver = solver or SolverPool(0)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.started_at = started_at
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_solves)

    def grid(self) -> GridView:
        """Every registered node as the planner should see it now (``grid.judge``); the garbage
        collector waits meanwhile (``collector.paused``; a caller that keeps the grid while it
        solves keeps the collector paused until the grid is freed)."""
        with collector.paused():
            return self.judge(self.store.nodes(), self.clock())

    def pulses(self) -> Pulses:
        """Every node's pulse judged now as ``grid()`` judges the nodes (silence, a mass
        silence): a few columns per node, no document read."""
        settings = self.settings
        return judge_pulses(
            self.store.node_pulses(),
            self.clock(),
            self.started_at,
            settings.heartbeat_grace_s,
            settings.mass_silence_fraction,
        )

    def node_view(self, name: str) -> NodeView | None:
        """One node judged like ``grid()`` would, reading counts instead of every node."""
        record = self.store.node(name)
        return None if record is None else self.view_of(record)

    def view_of(self, record: NodeRecord) -> NodeView:
        now = self.clock()
        # Only a silent node needs to know whether the whole grid went quiet.
        silent = seconds_silent(record, now, self.started_at) > self.settings.heartbeat_grace_s
        return self.judge([record], now, self._population(now) if silent else None).nodes[0]

    def nodes_page(self, limit: int, offset: int, after: str | None) -> tuple[list[NodeView], int]:
        """A page of nodes by name judged as ``grid()`` judges them, and how many there are:
        the page's rows and two counts read, not the grid."""
        now = self.clock()
        population = self._population(now)
        records = self.store.nodes(limit=limit, offset=offset, after=after)
        return self.judge(records, now, population).nodes, population[1]

    def _population(self, now: datetime) -> tuple[int, int]:
        """(silent nodes, all nodes) at ``now``: silence counts from the server's start."""
        cutoff = now - timedelta(seconds=self.settings.heartbeat_grace_s)
        if self.started_at >= cutoff:  # up for less than the grace period: nobody is silent
            return 0, self.store.node_count()
        return self.store.quiet_count(cutoff)

    def judge(
        self, records: list[NodeRecord], now: datetime, population: tuple[int, int] | None = None
    ) -> GridView:
        """``records`` judged at ``now`` with this server's grace period and start
        (``grid.judge``; ``population``: (silent, all) nodes when ``records`` are not all)."""
        settings = self.settings
        return judge(
            records,
            now,
            self.started_at,
            settings.heartbeat_grace_s,
            settings.mass_silence_fraction,
            population,
        )

    @contextmanager
    def _solver_slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.settings.solve_wait_s):
            raise Unavailable(
                f"the solver is busy with other plans (waited {self.settings.solve_wait_s:g} s); "
                "retry later"
            )
        try:
            yield
        finally:
            self._slots.release()

    def _bundle(self, documents: list[LoadedDocument], view: GridView) -> SpecBundle:
        bundle = build_bundle(documents)
        return replace(bundle, nodes=view.planner_nodes(), probes=self.store.probes())

    def compute(
        self,
        documents: list[LoadedDocument],
        options: PlanOptions,
        trigger: str,
        reasons: list[str],
        expected_generation: int | None = None,
    ) -> PlanRecord:
        """Plan ``documents`` on the stored grid, from the latest plan (minimal moves), and store
        it as the next generation. ``GenerationConflict`` when ``expected_generation`` is not
        the latest, or when another plan was stored while this one was being solved."""
        _require_workloads(documents)
        if expected_generation is not None:  # fail before waiting for a solver slot
            self._expect(expected_generation)
        with self._solver_slot():
            # Read the base only now, and store before giving the slot up: requests queued
            # behind each other each build on the plan the one before them stored, instead of
            # all on the one that was latest when they arrived (making all but one conflicts).
            latest = self.store.latest_plan()
            base = latest.generation if latest else 0
            if expected_generation is not None and expected_generation != base:
                raise GenerationConflict(expected_generation, base)
            with collector.paused():  # until the grid read for it is freed: see collector
                return self._solve_and_store(documents, options, trigger, reasons, latest)

    def _solve_and_store(
        self,
        documents: list[LoadedDocument],
        options: PlanOptions,
        trigger: str,
        reasons: list[str],
        latest: PlanRecord | None,
    ) -> PlanRecord:
        base = latest.generation if latest else 0
        calibration = self.store.latest_calibration()
        solved = self._solve(documents, options, latest, calibration)
        assert solved.basis is not None  # (read with the grid)
        generation = base + 1
        labels = dict(solved.plan.metadata.labels)
        if calibration is not None:
            labels[PROVENANCE_KEY] = str(calibration.id)
        metadata = solved.plan.metadata.model_copy(
            update={"name": f"plan-{generation}", "generation": generation, "labels": labels}
        )
        plan = solved.plan.model_copy(update={"metadata": metadata})
        new = NewPlan(
            plan=plan,
            base_generation=base,
            trigger=trigger,
            reasons=reasons,
            inputs=[document.obj.to_yaml_dict() for document in documents],
            options={**options.as_dict(), **_provenance(calibration)},
            basis=solved.basis,
            explanation=solved.explanation,
            compile_s=round(solved.compile_s, 4),
            solve_s=round(solved.solve_s, 4),
        )
        summary = self.store.add_plan(new, self.clock())  # GenerationConflict: another server
        self.metrics.plan_solved(trigger, solved.compile_s + solved.solve_s)
        log.info(
            "plan generation %d (%s): %d replicas, %d unplaced, %.2f s%s",
            generation,
            trigger,
            summary.replicas,
            summary.unplaced,
            solved.compile_s + solved.solve_s,
            f" ({'; '.join(reasons)})" if reasons else "",
        )
        return PlanRecord(
            summary=summary,
            plan=plan,
            inputs=new.inputs,
            options=new.options,
            basis=new.basis,
            explanation=new.explanation,
        )

    def _solve(
        self,
        documents: list[LoadedDocument],
        options: PlanOptions,
        latest: PlanRecord | None,
        calibration: CalibrationRecord | None,
    ) -> Solved:
        """``documents`` solved on the stored grid, with each node's basis. A solver worker
        reads the nodes and probes itself (``stored_grid``): this process never holds them."""
        learned = Calibration.from_dict(calibration.document) if calibration else None
        args = (
            options.strategy,
            options.time_limit_s,
            held_standbys(latest.plan, self.store.state) if latest else None,
            options.budget_per_hour,
            learned,
        )
        if self.solver.processes:
            self.store.flush_heartbeats()  # the worker reads what this server has answered
            grid = StoredGrid(
                self.settings.database_url,
                self.clock(),
                self.started_at,
                self.settings.heartbeat_grace_s,
                self.settings.mass_silence_fraction,
            )
            return self.solver.solve(
                build_bundle(documents), *args, grid=grid, shards=options.shards
            )
        view = self.grid()
        solved = self.solver.solve(self._bundle(documents, view), *args, shards=options.shards)
        return replace(solved, basis={node.name: node.basis for node in view.nodes})

    def dry_run(self, documents: list[LoadedDocument], options: PlanOptions) -> DryRun:
        """The plan ``compute`` would store now, without storing or publishing it: the documents
        solved on the stored grid from the latest plan (moves priced as in a replan), with the
        latest plan's options when there is one (as its replan would), else ``options``."""
        _require_workloads(documents)
        with self._solver_slot(), collector.paused():
            latest = self.store.latest_plan()
            if latest is not None:
                options = PlanOptions.from_dict(latest.options)
            solved = self._solve(documents, options, latest, self.store.latest_calibration())
        base = latest.generation if latest else 0
        metadata = solved.plan.metadata.model_copy(
            update={"name": "dry-run", "generation": base + 1}
        )
        return DryRun(
            plan=solved.plan.model_copy(update={"metadata": metadata}), base_generation=base
        )

    def afresh(self, latest: PlanRecord) -> PlacementPlan:
        """The plan ``latest``'s inputs get now from nothing (no previous plan, so no replica
        kept for its move's sake) under the latest calibration, with ``latest``'s options:
        neither stored nor published (the cost trigger's reference). Solved where plans are."""
        documents = reparse(latest.inputs, f"plan generation {latest.generation} inputs")
        with self._solver_slot(), collector.paused():
            calibration = self.store.latest_calibration()
            options = PlanOptions.from_dict(latest.options)
            return self._solve(documents, options, None, calibration).plan

    def recalibrate(self) -> CalibrationRecord | None:
        """The latest calibration, estimated anew first when windows arrived since it was."""
        windows = self.store.observations(limit=CALIBRATION_WINDOWS)
        stored = self.store.latest_calibration()
        if not windows:
            return stored
        newest = windows[-1].id
        if stored is not None and stored.document.get("newestObservation") == newest:
            return stored
        observed = self.store.nodes_named({record.window.node for record in windows})
        oracle = ModelOracle([record.node for record in observed], builtin_catalog())
        calibration = estimate((record.window for record in windows), oracle)
        document = {**calibration.as_dict(), "newestObservation": newest}
        self.store.add_calibration(document, self.clock(), CALIBRATIONS_KEPT)
        return self.store.latest_calibration()

    def _expect(self, expected_generation: int) -> None:
        latest = self.store.latest_generation()
        if latest != expected_generation:
            raise GenerationConflict(expected_generation, latest)

    def recompute(self, latest: PlanRecord, trigger: str, reasons: list[str]) -> PlanRecord:
        """The latest plan's inputs solved again on today's grid (a replan)."""
        documents = reparse(latest.inputs, f"plan generation {latest.generation} inputs")
        return self.compute(
            documents,
            PlanOptions.from_dict(latest.options),
            trigger,
            reasons,
            expected_generation=latest.generation,
        )

    def validate(self, documents: list[LoadedDocument]) -> Validation:
        """The CLI's checks: against the nodes in the body, or the stored grid when it has none.
        ``SpecError`` when the documents themselves are invalid, or when the CLI would refuse
        them: no workload, no node (in the body or the grid), an unknown traffic region."""
        bundle = build_bundle(documents)
        if not bundle.nodes:
            bundle = replace(bundle, nodes=self.grid().planner_nodes())
        if not bundle.probes:
            bundle = replace(bundle, probes=self.store.probes())
        issues = planning_input_issues(bundle)
        if issues:
            raise SpecError(issues)
        with self._solver_slot():
            return Validation(checks=self.solver.check(bundle))


def _require_workloads(documents: list[LoadedDocument]) -> None:
    if not any(document.kind == "InferenceWorkload" for document in documents):
        raise InvalidRequest.field("documents", "no InferenceWorkload in the request")


def _provenance(calibration: CalibrationRecord | None) -> dict[str, Any]:
    """What a plan records of the calibration it was made with (the triggers' reference)."""
    if calibration is None:
        return {}
    document = calibration.document
    return {
        PROVENANCE_KEY: {
            "id": calibration.id,
            "grid": document.get("grid"),
            "gpuTypes": document.get("gpuTypes", []),
        }
    }


def plan_calibration(record: PlanRecord) -> Calibration:
    """The calibration ``record`` was made with (none: the model as it is)."""
    return Calibration.from_dict(record.options.get(PROVENANCE_KEY, {}))
