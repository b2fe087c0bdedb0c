"""The grounded loop in simulated time: replicas report observation windows from the truth, the
server's estimator and replan triggers (``planner.recalibrate``, ``planner.replan_triggers``: the
functions the server runs) decide, the planner makes the next plan with the learned corrections,
and the simulator applies it with each new replica's cold start.

Owns: ``LoopSettings``, cutting a run into recalibration periods, turning each replica's engine
accounting into ``ObservationWindow``s, the per-period report (``PeriodRecord``), and
``known_calibration`` (the corrections a planner told a set bias and the nodes' spread would
book). Must not: read files or print; judge by the planner's figures (the truth is ``truth``'s).

At each period's end the triggers of ``planner.replan_triggers`` decide (capacity band, SLO
shortfall, and, when neither fires, the cost trigger: the plan in force against a dry-run plan
made afresh under the current calibration; when it fires, the next plan is the replan, which
keeps what the planner's move tolerance allows). The trigger compares against the fresh plan,
not the replan, so the two 5% allowances do not stack into ~10%. Each period [t0, t1)
(``recalibrate_every_s``) is simulated on its own,
with absolute times (the truth's throttling episodes and outages fall where they fall): the
requests sent in the period, drained for up to ``DRAIN_S``. Requests queued at a period's end
are not carried into the next (each period starts empty), the price of periods that can each
run a different plan. When a
period follows a replan, the new replicas load first: until the slowest new replica's cold start
(``perfmodel`` cold start, weights not cached, at the node's network speed) has passed, the old
plan serves (make before break) and both are paid for; then the new plan serves.

Observations: one window per replica and ``observation_window_s`` (60 s), the figures an engine's
metrics give (``replica.WindowStats``), its SLO attainment from the requests it served, and its
``gpuShare`` (a replica on a shared GPU is predicted on its slice). Prediction error of a
period: over its windows, the mean of |predicted / observed - 1| of the decode step and of the
prefill, predicted by the model with the node's correction in force during the period (the node
level of the calibration) on the GPU part of the step (``recalibrate.corrected``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from gridplace.planner.compile import PlannerInputs
from gridplace.planner.network import NetworkLatency
from gridplace.planner.perfmodel import Predictor
from gridplace.planner.planning import Strategy, make_plan
from gridplace.planner.pools import effective_gpu
from gridplace.planner.predictor import make_predictor
from gridplace.planner.recalibrate import (
    Calibration,
    Correction,
    ModelOracle,
    corrected,
    estimate,
    key_of,
)
from gridplace.planner.replan_triggers import (
    ReplanPolicy,
    capacity_moves,
    due_reasons,
    replica_queries,
    slo_shortfalls,
    windowed_attainment,
)
from gridplace.planner.solve import SolverSettings
from gridplace.sim.arrivals import Arrivals
from gridplace.sim.bias import TruthBias
from gridplace.sim.deploy import SimInputs, build_world, model_of
from gridplace.sim.engine import run
from gridplace.sim.errors import SimSettingsError
from gridplace.sim.metrics import SimResult
from gridplace.sim.replica import WindowStats
from gridplace.sim.scenario import SimSettings, make_arrivals
from gridplace.sim.truth import GroundTruth
from gridplace.specs import Assignment, InferenceWorkload, ObservationWindow, PlacementPlan
from gridplace.topology import Topology

OBSERVATION_WINDOW_S = 60.0


@dataclass(frozen=True)
class LoopSettings:
    recalibrate_every_s: float = 600.0
    observation_window_s: float = OBSERVATION_WINDOW_S
    strategy: Strategy = Strategy.CPSAT
    solver: SolverSettings = field(default_factory=lambda: SolverSettings(time_limit_s=10.0))
    policy: ReplanPolicy = field(default_factory=ReplanPolicy)


@dataclass(frozen=True)
class PeriodRecord:
    start_s: float
    end_s: float
    requests: int
    attainment: float
    cost_per_hour: float  # time-weighted over the period (both plans while new replicas load)
    prediction_error_pct: float | None  # None: no observation windows
    stall_share: float
    replicas: int
    replanned: bool  # a replan at this period's end
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        error = self.prediction_error_pct
        return {
            "startS": self.start_s,
            "endS": self.end_s,
            "requests": self.requests,
            "attainment": round(self.attainment, 6),
            "costPerHour": round(self.cost_per_hour, 4),
            "predictionErrorPct": None if error is None else round(error, 3),
            "stallShare": round(self.stall_share, 6),
            "replicas": self.replicas,
            "replanned": self.replanned,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class LoopResult:
    periods: tuple[PeriodRecord, ...]
    plans: tuple[PlacementPlan, ...]  # the first plan, then each replan's
    calibration: Calibration  # the last estimate

    @property
    def attainment(self) -> float:
        met = sum(p.attainment * p.requests for p in self.periods)
        total = sum(p.requests for p in self.periods)
        return met / total if total else 1.0

    @property
    def cost_per_hour(self) -> float:
        """Time-weighted over the run."""
        span = sum(p.end_s - p.start_s for p in self.periods)
        return sum(p.cost_per_hour * (p.end_s - p.start_s) for p in self.periods) / span


class _Planner:
    """The planner as the server runs it: make_plan over the predictor with corrections."""

    def __init__(self, inputs: SimInputs, settings: LoopSettings) -> None:
        self._inputs = inputs
        self._settings = settings
        regions = {s.region for w in inputs.workloads for s in w.spec.traffic.sources}
        topology = Topology.build(inputs.nodes, inputs.probes)
        self.latency = NetworkLatency(topology.latency_lookup(regions))

    def plan(
        self, previous: PlacementPlan | None, calibration: Calibration | None
    ) -> PlacementPlan:
        inputs = PlannerInputs(
            nodes=self._inputs.nodes, workloads=self._inputs.workloads,
            catalog=self._inputs.catalog, previous=previous,
        )  # fmt: skip
        predictor = make_predictor(self._inputs.profiles, self._inputs.catalog, calibration)
        result = make_plan(
            inputs, predictor, self.latency, self._settings.strategy, self._settings.solver
        )
        return result.plan


def plan_with(
    inputs: SimInputs, calibration: Calibration | None, settings: LoopSettings | None = None
) -> PlacementPlan:
    """A plan made the way the loop makes them (e.g. with ``known_calibration``)."""
    return _Planner(inputs, settings or LoopSettings()).plan(None, calibration)


def run_loop(
    inputs: SimInputs,
    first_plan: PlacementPlan,
    settings: SimSettings,
    loop: LoopSettings,
) -> LoopResult:
    """Run ``first_plan`` and the plans the loop makes, period by period (module docstring)."""
    if not loop.recalibrate_every_s > 0:
        raise SimSettingsError("recalibrate_every_s", loop.recalibrate_every_s, "must be > 0")
    if not 0 < loop.observation_window_s <= loop.recalibrate_every_s:
        raise SimSettingsError(
            "observation_window_s", loop.observation_window_s, "must be in (0, period]"
        )
    duration_s = settings.duration_s
    truth = GroundTruth.build(
        inputs.nodes, inputs.catalog, duration_s + settings.drain_s, settings.seed, settings.truth
    )
    arrivals = make_arrivals(inputs, settings)
    planner = _Planner(inputs, loop)
    oracle = ModelOracle(inputs.nodes, inputs.catalog)
    plan, previous = first_plan, None
    made_with = calibration = Calibration()
    plan_since_s = 0.0
    observed: list[ObservationWindow] = []
    periods: list[PeriodRecord] = []
    plans = [first_plan]
    starts = np.arange(0.0, duration_s, loop.recalibrate_every_s)
    for start_s in starts.tolist():
        end_s = min(start_s + loop.recalibrate_every_s, duration_s)
        segments = _segments(inputs, previous, plan, start_s, end_s)
        results = [
            (seg_plan, run(build_world(seg_plan, inputs, truth), _between(arrivals, a, b), b,
                           settings.drain_s, loop.observation_window_s), a, b, extra)
            for seg_plan, a, b, extra in segments
        ]  # fmt: skip
        windows = [
            w
            for seg_plan, result, a, b, _ in results
            for w in observations(seg_plan, inputs, result, a, b, loop.observation_window_s)
        ]
        error = prediction_error_pct(windows, oracle, calibration)
        observed.extend(windows)
        calibration = estimate(observed, oracle)
        reasons: list[str] = []
        if end_s < duration_s:
            queries = replica_queries(plan, inputs.workloads, inputs.nodes, inputs.catalog)
            before = make_predictor(inputs.profiles, inputs.catalog, made_with)
            after = make_predictor(inputs.profiles, inputs.catalog, calibration)
            reasons = capacity_moves(queries, before, after, loop.policy)
            attainment = windowed_attainment(observed, plan_since_s, loop.observation_window_s)
            reasons += slo_shortfalls(attainment, loop.policy)
            # Else the cost trigger: the plan in force against one made afresh.
            afresh = partial(planner.plan, None, calibration)
            cost = partial(plan_cost_per_hour, inputs)
            reasons = due_reasons(reasons, plan, afresh, cost, loop.policy)
        periods.append(_record(results, start_s, end_s, error, plan, reasons))
        if reasons:
            new_plan = planner.plan(plan, calibration)  # keeps what its move tolerance allows
            previous, plan = plan, new_plan
            made_with, plan_since_s = calibration, end_s
            plans.append(plan)
        else:
            previous = None
    return LoopResult(tuple(periods), tuple(plans), calibration)


def _between(arrivals: Arrivals, start_s: float, end_s: float) -> Arrivals:
    mask = (arrivals.time_s >= start_s) & (arrivals.time_s < end_s)
    return Arrivals(
        arrivals.time_s[mask], arrivals.workload[mask], arrivals.region[mask],
        arrivals.prompt_tokens[mask], arrivals.output_tokens[mask], arrivals.rtt_z[mask],
    )  # fmt: skip


def _identity_of(a: Assignment) -> tuple[object, ...]:
    return (a.workload, a.node, tuple(a.gpus), a.precision, a.tensor_parallel, a.gpu_share)


def _identity(plan: PlacementPlan) -> set[tuple[object, ...]]:
    return {_identity_of(a) for a in plan.spec.assignments}


def _segments(
    inputs: SimInputs,
    previous: PlacementPlan | None,
    plan: PlacementPlan,
    start_s: float,
    end_s: float,
) -> list[tuple[PlacementPlan, float, float, float]]:
    """(plan serving, from, to, extra cost per hour) for the period."""
    if previous is None:
        return [(plan, start_s, end_s, 0.0)]
    old = _identity(previous)
    new = [a for a in plan.spec.assignments if _identity_of(a) not in old]
    if not new:
        return [(plan, start_s, end_s, 0.0)]
    loading = min(end_s, start_s + max(_cold_start_s(inputs, a) for a in new))
    extra = sum(_cost_per_hour(inputs, a) for a in new)
    segments = [(previous, start_s, loading, extra)]
    if loading < end_s:
        segments.append((plan, loading, end_s, 0.0))
    return segments


def _cold_start_s(inputs: SimInputs, assignment: Assignment) -> float:
    nodes = {n.name: n for n in inputs.nodes}
    node = nodes[assignment.node]
    groups = [g for g in node.spec.gpus for _ in range(g.count)]
    group = groups[assignment.gpus[0]]
    workload = next(w for w in inputs.workloads if w.name == assignment.workload)
    _, model = model_of(workload, inputs.catalog)
    predictor = Predictor(
        model, effective_gpu(inputs.catalog.gpus[group.model], group), assignment.precision,
        workload.spec.engine, assignment.tensor_parallel,
    )  # fmt: skip
    cold = predictor.cold_start(network_gbit_per_s=node.spec.network_gbps, cached=False)
    return cold.total_s


def plan_cost_per_hour(inputs: SimInputs, plan: PlacementPlan) -> float:
    """What the simulator charges for the plan's replicas per hour."""
    return sum(_cost_per_hour(inputs, a) for a in plan.spec.assignments)


def _cost_per_hour(inputs: SimInputs, assignment: Assignment) -> float:
    node = next(n for n in inputs.nodes if n.name == assignment.node)
    price = node.spec.price_per_hour / node.spec.gpu_count
    return price * assignment.tensor_parallel / assignment.gpu_share


def observations(
    plan: PlacementPlan,
    inputs: SimInputs,
    result: SimResult,
    start_s: float,
    end_s: float,
    window_s: float,
) -> list[ObservationWindow]:
    """Each replica's engine windows in [start_s, end_s) as an agent would post them."""
    met = result.met()
    windows = []
    workloads = {w.name: w for w in inputs.workloads}
    for index, assignment in enumerate(plan.spec.assignments):
        if index >= len(result.replica_windows):
            continue
        workload = workloads[assignment.workload]
        mine = result.replica == index
        groups = [g for n in inputs.nodes if n.name == assignment.node for g in n.spec.gpus
                  for _ in range(g.count)]  # fmt: skip
        for bucket, stats in sorted(result.replica_windows[index].items()):
            lo, hi = max(start_s, bucket * window_s), min(end_s, (bucket + 1) * window_s)
            if hi <= lo or not isinstance(stats, WindowStats) or stats.prompts == 0:
                continue
            served = mine & (result.sent_s >= lo) & (result.sent_s < hi)
            attainment = float(met[served].mean()) if served.any() else None
            gpu = groups[assignment.gpus[0]].model
            windows.append(_window(workload, inputs, gpu, assignment, lo, hi, stats, attainment))
    return windows


def _window(
    workload: InferenceWorkload, inputs: SimInputs, gpu: str, assignment: Assignment,
    start_s: float, end_s: float, stats: WindowStats, attainment: float | None,
) -> ObservationWindow:  # fmt: skip
    steps = stats.decode_steps
    return ObservationWindow(
        node=assignment.node, workload=workload.name, model=model_of(workload, inputs.catalog)[0],
        gpu=gpu, precision=assignment.precision, engine=workload.spec.engine,
        tensor_parallel=assignment.tensor_parallel, gpu_share=assignment.gpu_share,
        start_s=start_s, end_s=end_s, requests=stats.prompts, prompt_tokens=stats.prompt_tokens,
        prefill_seconds=stats.prefill_ms / 1000.0,
        decode_seconds=stats.decode_ms / 1000.0 if steps else None,
        decode_steps=steps or None,
        mean_running_batch=stats.batch_sum / steps if steps else None,
        mean_context_tokens=stats.context_sum / stats.batch_sum if stats.batch_sum else None,
        slo_attainment=attainment,
    )  # fmt: skip


def prediction_error_pct(
    windows: Sequence[ObservationWindow], oracle: ModelOracle, calibration: Calibration
) -> float | None:
    """Mean |predicted / observed - 1| of decode steps and prefills, percent (module docstring)."""
    errors = []
    for window in windows:
        model = oracle(window)
        if model is None or not window.requests:
            continue
        correction = calibration.for_node(window.node, key_of(window)) or Correction()
        if window.decode_seconds and window.decode_steps and window.mean_running_batch:
            observed = window.decode_seconds * 1000.0 / window.decode_steps
            batch = max(1, round(window.mean_running_batch))
            context = max(1, round(window.mean_context_tokens or 1))
            predicted = corrected(
                model.decode_ms(batch, context), model.step_overhead_ms, correction.decode
            )
            errors.append(abs(predicted / observed - 1))
        if window.prefill_seconds and window.prompt_tokens:
            observed = window.prefill_seconds * 1000.0 / window.requests
            prompt = max(1, round(window.prompt_tokens / window.requests))
            predicted = corrected(
                model.prefill_ms(1, prompt), model.step_overhead_ms, correction.prefill
            )
            errors.append(abs(predicted / observed - 1))
    return 100.0 * float(np.mean(errors)) if errors else None


def _record(
    results: Sequence[tuple[PlacementPlan, SimResult, float, float, float]],
    start_s: float,
    end_s: float,
    error: float | None,
    plan: PlacementPlan,
    reasons: Sequence[str],
) -> PeriodRecord:
    met = requests = done = stalled = 0
    cost = 0.0
    for _, result, a, b, extra in results:
        flags = result.met()
        met += int(flags.sum())
        requests += len(flags)
        done_mask = result.status == 1
        done += int(done_mask.sum())
        stalled += int(result.stalled().sum())
        cost += (result.total().cost_per_hour + extra) * (b - a)
    return PeriodRecord(
        start_s=start_s, end_s=end_s, requests=requests,
        attainment=met / requests if requests else 1.0,
        cost_per_hour=cost / (end_s - start_s), prediction_error_pct=error,
        stall_share=stalled / done if done else 0.0, replicas=len(plan.spec.assignments),
        replanned=bool(reasons), reasons=tuple(reasons),
    )  # fmt: skip


def known_calibration(
    bias: TruthBias, inputs: SimInputs, truth: GroundTruth | None = None
) -> Calibration | None:
    """The corrections a planner told the truth would book: for every (GPU, model, precision,
    engine) of the grid a bias rule matches, the rule's factors, times, with ``truth``, the
    geometric mean of the node spreads (``NodeTruth`` decode and prefill factors) of the grid's
    nodes with that GPU: the truth in the units the planner books (GPU types; it plans node
    classes, not nodes). None when the bias is not (only) set by hand."""
    if not bias.rules:
        return None
    spreads: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for node in inputs.nodes:
        found = truth.nodes.get(node.name) if truth is not None else None
        for group in node.spec.gpus:
            if found is not None:
                spreads[group.model].append((found.decode_factor, found.prefill_factor))
    corrections = {}
    for node in inputs.nodes:
        for group in node.spec.gpus:
            gpu = inputs.catalog.gpus.get(group.model)
            if gpu is None:
                continue
            logs = np.log(spreads.get(group.model) or [(1.0, 1.0)]).mean(axis=0)
            decode, prefill = (math.exp(float(x)) for x in logs)
            for workload in inputs.workloads:
                model_id = model_of(workload, inputs.catalog)[0]
                rule = bias.rule_for(gpu.architecture, workload.spec.engine)
                if rule is None:
                    continue
                for precision in workload.spec.precisions:
                    key = (group.model, model_id, precision.value, workload.spec.engine.value)
                    corrections[key] = Correction(
                        rule.decode * decode, rule.prefill * prefill, math.inf, math.inf
                    )
    return Calibration(gpu_types=corrections)
