"""Replanning on change: the check the server runs periodically (and on ``POST /v1/replan``).

A new generation is computed from the latest plan — its inputs re-solved on today's grid with the
latest plan as ``previous``, so replicas that can stay, stay (minimal moves) — when, compared with
what that plan was based on (its *basis*):

- a node that holds replicas (a pipeline replica's later stages included) is gone:
  deregistered, reported unhealthy, or silent past the heartbeat grace period (``grid.py``: a
  short blip inside the grace period is not silence, and a grid-wide silence is blamed on the
  server's network, never acted on);
- a node's throttle ratio moved by at least ``derate_threshold`` (either way: a hot node loses
  capacity, a cooled one gains it);
- a node became available again (or joined) while the plan leaves some workload unplaced;
- the calibration learned from the engines' observations (``PlanService.recalibrate``) moves a
  replica's predicted capacity by more than ``calibration_capacity_change`` from what the plan's
  own calibration predicted, or a workload's observed SLO attainment stayed under
  ``slo_attainment_target`` for two windows since the plan was made (``planner.replan_triggers``:
  the same triggers the simulator's loop runs, with their hysteresis);
- when none of those fired, at most every ``cost_check_interval_s`` (and not sooner after the
  plan was made): a plan made afresh under the current calibration (solved where plans are
  solved, a worker process by default) costs less by more than 5% and leaves no more workloads
  unplaced (``replan_triggers.due_reasons``, the simulator's loop's order and cost trigger). The
  replan is then the usual one from the latest plan, as the simulator's loop adopts it.

Anything else — a node without replicas going away, a throttle ratio wobbling under the
threshold — changes nothing, so agents never see churn for noise. The check reads every node's
pulse (a few columns) and the documents of the nodes they point at, never the whole grid
(``Replanner._changes``).
Must not: decide placement (the planner does) or write anything but through ``PlanService``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from gridplace.api.bodies import reparse
from gridplace.api.grid import GridView, counts_silent
from gridplace.api.metrics import Metrics
from gridplace.api.service import (
    CALIBRATION_WINDOWS,
    PROVENANCE_KEY,
    PlanService,
    plan_calibration,
)
from gridplace.api.settings import Settings
from gridplace.api.store import (
    CalibrationRecord,
    GenerationConflict,
    NodePulse,
    PlanRecord,
    Store,
)
from gridplace.planner.predictor import make_predictor
from gridplace.planner.recalibrate import (
    Calibration,
)
from gridplace.planner.replan_triggers import (
    ReplanPolicy,
    capacity_moves,
    due_reasons,
    replica_queries,
    slo_shortfalls,
    windowed_attainment,
)
from gridplace.specs import Node, PlacementPlan, build_bundle

log = logging.getLogger("gridplace.api")
# The advisory lock the periodic check holds: with several servers on one PostgreSQL, one checks
# and the others skip that round (a plan conflict would refuse the second plan anyway).
REPLAN_LOCK_ID = 0x7265706C  # "repl"


@dataclass(frozen=True)
class ReplanOutcome:
    """What a check or an explicit replan did."""

    replanned: bool
    reasons: list[str]
    record: PlanRecord | None = None  # the new plan when replanned
    skipped: str | None = None  # why not, in a word (no-plan, no-change, conflict, ...)


def _cost_per_hour(plan: PlacementPlan) -> float:
    """What the planner priced ``plan``'s replicas at (0: unknown, so never replaced for cost)."""
    return (plan.status.cost_per_hour or 0.0) if plan.status else 0.0


def replicas_by_node(latest: PlanRecord) -> dict[str, int]:
    """How many of ``latest``'s replicas each node holds (a pipeline replica is on every stage's
    node: losing any of them loses the replica)."""
    replicas_on: dict[str, int] = {}
    for assignment in latest.plan.spec.assignments:
        holders = [s.node for s in assignment.stages] if assignment.stages else [assignment.node]
        for holder in holders:
            replicas_on[holder] = replicas_on.get(holder, 0) + 1
    return replicas_on


def is_short(latest: PlanRecord) -> bool:
    """Whether ``latest`` left a workload unplaced or short of its SLO."""
    status = latest.plan.status
    return bool(status and (status.unplaced or any(not w.slo_met for w in status.workloads)))


def detect_changes(
    latest: PlanRecord,
    view: GridView,
    derate_threshold: float,
    registered: Collection[str] | None = None,
) -> list[str]:
    """Why ``latest`` no longer fits the grid (empty: it still does); see the module docstring.
    ``view`` is the whole grid, or, with the names of every ``registered`` node, only the nodes
    that may give a reason (``suspects``): a node holding replicas missing from it is then
    deregistered only if it is not among them."""
    reasons: list[str] = []
    nodes = view.by_name()
    replicas_on = replicas_by_node(latest)
    for name in sorted(replicas_on):
        count = replicas_on[name]
        current = nodes.get(name)
        if current is None:
            if registered is None or name not in registered:
                reasons.append(f"node {name} deregistered ({count} replicas)")
        elif not current.healthy:
            why = current.node.status.message if current.node.status else None
            state = "silent" if current.silent and not view.mass_silence else "unhealthy"
            reasons.append(f"node {name} {state} ({count} replicas)" + (f": {why}" if why else ""))
    for name, view_node in sorted(nodes.items()):
        basis = latest.basis.get(name)
        if basis is None or not view_node.healthy:
            continue
        moved = view_node.node.throttle_ratio - basis.throttle_ratio
        if abs(moved) >= derate_threshold:
            reasons.append(
                f"node {name} throttle ratio {basis.throttle_ratio:.2f} -> "
                f"{view_node.node.throttle_ratio:.2f} (threshold {derate_threshold:g})"
            )
    if is_short(latest):
        for name, view_node in sorted(nodes.items()):
            basis = latest.basis.get(name)
            if view_node.healthy and (basis is None or not basis.healthy):
                reasons.append(f"node {name} available and some workload is not fully placed")
    return reasons


def suspects(
    latest: PlanRecord,
    pulses: list[NodePulse],
    silent: set[str],
    derate_threshold: float,
    mass_silence: bool = False,
) -> set[str]:
    """The nodes that may give ``detect_changes`` a reason, judged from the nodes' pulses alone
    (no node document read): a superset of those it names — a node holding replicas that is
    gone (not registered, reported unhealthy or ``silent``, unless in a ``mass_silence``,
    which ``detect_changes`` ignores too); a throttle move past the threshold; a node healthy
    now and not in the basis while the plan is short. Empty: ``detect_changes`` finds none."""
    replicas_on = replicas_by_node(latest)
    seen = {pulse.name for pulse in pulses}
    found = {name for name in replicas_on if name not in seen}
    short = is_short(latest)
    for pulse in pulses:
        healthy = pulse.reported.healthy  # silence aside: a mass silence keeps nodes healthy
        gone = not healthy or counts_silent(pulse.name in silent, mass_silence)
        basis = latest.basis.get(pulse.name)
        moved = basis is not None and (
            abs(pulse.reported.throttle_ratio - basis.throttle_ratio) >= derate_threshold
        )
        back = short and (basis is None or not basis.healthy)
        if (pulse.name in replicas_on and gone) or (healthy and (moved or back)):
            found.add(pulse.name)
    return found


def may_have_changed(
    latest: PlanRecord,
    pulses: list[NodePulse],
    silent: set[str],
    derate_threshold: float,
    mass_silence: bool = False,
) -> bool:
    """Whether ``detect_changes`` could find a reason (``suspects``); False: it finds none."""
    return bool(suspects(latest, pulses, silent, derate_threshold, mass_silence))


def calibration_changes(
    latest: PlanRecord,
    current: CalibrationRecord | None,
    planner_nodes: Callable[[], list[Node]],
    store: Store,
    settings: Settings,
) -> list[str]:
    """Why the learned corrections or the observed SLO call for a new plan (see the docstring)."""
    policy = ReplanPolicy(settings.calibration_capacity_change, settings.slo_attainment_target)
    reasons: list[str] = []
    made_with = latest.options.get(PROVENANCE_KEY, {}).get("id")
    if current is not None and current.id != made_with:
        bundle = build_bundle(reparse(latest.inputs, f"plan generation {latest.generation}"))
        queries = replica_queries(latest.plan, bundle.workloads, planner_nodes(), bundle.catalog)
        before = make_predictor(bundle.profiles, bundle.catalog, plan_calibration(latest))
        learned = Calibration.from_dict(current.document)
        after = make_predictor(bundle.profiles, bundle.catalog, learned)
        reasons.extend(capacity_moves(queries, before, after, policy))
    windows = (record.window for record in store.observations(limit=CALIBRATION_WINDOWS))
    since_s = latest.summary.created_at.timestamp()
    attainment = windowed_attainment(windows, since_s, settings.observation_window_s)
    reasons.extend(slo_shortfalls(attainment, policy))
    return reasons


class Replanner:
    def __init__(self, service: PlanService, metrics: Metrics) -> None:
        self.service = service
        self.metrics = metrics
        self._cost_checked_at: datetime | None = None  # this server's last cost trigger solve

    def check(self) -> ReplanOutcome:
        """Replan if the grid changed in a way that matters (the periodic check); skipped while
        another server of the database runs its own."""
        with self.service.store.exclusive(REPLAN_LOCK_ID) as alone:
            if not alone:
                return ReplanOutcome(replanned=False, reasons=[], skipped="another-server")
            return self._check()

    def _check(self) -> ReplanOutcome:
        latest = self.service.store.latest_plan()
        if latest is None:
            return ReplanOutcome(replanned=False, reasons=[], skipped="no-plan")
        changes = self._changes(latest, periodic=True)
        checked: list[bool] = []  # whether the cost trigger's plan was made (it is a solve)

        def afresh() -> PlacementPlan | None:
            fresh = self._afresh(latest)
            checked.append(fresh is not None)
            return fresh

        reasons = due_reasons(changes, latest.plan, afresh, _cost_per_hour, ReplanPolicy())
        if not reasons:
            if any(checked):
                self.metrics.cost_checked(replanned=False)
            return ReplanOutcome(replanned=False, reasons=[], skipped="no-change")
        outcome = self._replan(latest, "change" if changes else "cost", reasons)
        if not changes:
            self.metrics.cost_checked(replanned=outcome.replanned)
        return outcome

    def _afresh(self, latest: PlanRecord) -> PlacementPlan | None:
        """The cost trigger's plan made afresh (``PlanService.afresh``) when one is due: at
        most every ``cost_check_interval_s``, and not sooner after ``latest`` was made."""
        interval_s = self.service.settings.cost_check_interval_s
        now = self.service.clock()
        since = max(latest.summary.created_at, self._cost_checked_at or latest.summary.created_at)
        if not interval_s or (now - since).total_seconds() < interval_s:
            return None
        self._cost_checked_at = now
        return self.service.afresh(latest)

    def replan(self) -> ReplanOutcome:
        """Replan now, whatever changed (``POST /v1/replan``); conflicts propagate (409)."""
        latest = self.service.store.latest_plan()
        if latest is None:
            return ReplanOutcome(replanned=False, reasons=[], skipped="no-plan")
        changes = self._changes(latest, periodic=False)
        record = self.service.recompute(latest, "requested", ["requested", *changes])
        return ReplanOutcome(replanned=True, reasons=["requested", *changes], record=record)

    def _changes(self, latest: PlanRecord, periodic: bool) -> list[str]:
        """Why ``latest`` no longer fits, read without the whole grid: every node's pulse (a
        few columns), then the documents of the nodes the pulses point at (``suspects``) and
        of the nodes holding replicas when the calibration moved. A mass silence is judged from
        the pulses too: every node of a 10,000-node grid silent at once (the server's network)
        reads no document."""
        service, settings = self.service, self.service.settings
        judged = service.pulses()
        pulses, silent, mass_silence = judged.pulses, judged.silent, judged.mass_silence
        if mass_silence and periodic:
            self.metrics.replan_skipped("mass-silence")
            log.warning(
                "%d of %d nodes are silent: assuming the server's network, not replanning "
                "for silence",
                len(silent),
                len(pulses),
            )
        names = suspects(latest, pulses, silent, settings.derate_threshold, mass_silence)
        reasons: list[str] = []
        if names:
            records = service.store.nodes_named(names)
            view = service.judge(records, judged.now, (len(silent), len(pulses)))
            registered = {pulse.name for pulse in pulses}
            reasons = detect_changes(latest, view, settings.derate_threshold, registered)
        return reasons + self._calibration_changes(latest)

    def _calibration_changes(self, latest: PlanRecord) -> list[str]:
        store = self.service.store
        holders = replicas_by_node(latest)
        return calibration_changes(
            latest,
            self.service.recalibrate(),
            lambda: [record.node for record in store.nodes_named(holders)],
            store,
            self.service.settings,
        )

    def _replan(self, latest: PlanRecord, trigger: str, reasons: list[str]) -> ReplanOutcome:
        try:
            record = self.service.recompute(latest, trigger, reasons)
        except GenerationConflict:
            # Someone stored a plan meanwhile; the next check compares against that one.
            self.metrics.replan_skipped("conflict")
            return ReplanOutcome(replanned=False, reasons=reasons, skipped="conflict")
        return ReplanOutcome(replanned=True, reasons=reasons, record=record)
