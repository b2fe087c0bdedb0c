"""From a plan and the specs to a ``World``: replicas with their true speeds, the network, costs.

Owns: checking that a plan can be simulated against the given nodes and workloads (every
problem reported at once, naming its assignment), building each replica's step times from the
performance model and the ground truth, the client-to-replica RTT table, and cost per hour.
Must not: read an assignment's ``predicted`` figures or anything else the planner computed: a
replica is judged by the performance model and the hidden truth alone.

A replica on ``gpuShare`` s runs on 1/s of its GPU (``planner.pools.share_of``: memory,
bandwidth and tensor throughput), the planner's own convention. Its speed: with the thermal
layer on, the performance model at derate 0 between episodes and derate 1 (fully capped) during
them; with it off, at the node's booked throttle ratio (the time-weighted mix the planner uses).
Cost of a replica: node price / node GPUs x its GPUs / share.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gridplace.planner.perfmodel import Predictor, ProfileBook
from gridplace.planner.pools import effective_gpu, share_of
from gridplace.sim.coldstart import ColdStartSettings, start_s
from gridplace.sim.engine import ReplicaSetup, WorkloadSetup, World
from gridplace.sim.errors import PlanReferenceError
from gridplace.sim.steps import PredictorSteps, ReplicaLimits, SpeedSchedule
from gridplace.sim.truth import GroundTruth
from gridplace.specs import (
    Assignment,
    Catalog,
    GPUGroup,
    GPUModelSpec,
    InferenceWorkload,
    LatencyProbes,
    ModelArchitectureSpec,
    Node,
    PerformanceProfile,
    PlacementPlan,
    SpecBundle,
)
from gridplace.specs.plan import PlacementPlanSpec, PrewarmLevel
from gridplace.topology import Percentile

P99_Z = 2.3263  # standard normal quantile of 0.99
SHARE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SimInputs:
    """The specs a plan is simulated against."""

    nodes: Sequence[Node]
    workloads: Sequence[InferenceWorkload]
    catalog: Catalog
    probes: Sequence[LatencyProbes] = ()
    profiles: Sequence[PerformanceProfile] = ()

    @classmethod
    def from_bundle(cls, bundle: SpecBundle) -> SimInputs:
        return cls(bundle.nodes, bundle.workloads, bundle.catalog, bundle.probes, bundle.profiles)


@dataclass(frozen=True)
class ResolvedReplica:
    """An assignment checked against the specs."""

    label: str
    workload: int
    node: Node
    gpu_id: str
    gpu: GPUModelSpec  # catalog entry with the node's overrides, whole GPU
    assignment: Assignment
    cost_per_hour: float


def assignment_label(index: int, assignment: Assignment) -> str:
    gpus = ",".join(str(g) for g in assignment.gpus)
    share = f" (1/{assignment.gpu_share})" if assignment.gpu_share > 1 else ""
    return f"assignment {index} ({assignment.workload} on {assignment.node}:{gpus}{share})"


def resolve(plan: PlacementPlan, inputs: SimInputs) -> list[ResolvedReplica]:
    """Check every assignment against the specs; raise ``PlanReferenceError`` listing them all."""
    nodes = {n.name: n for n in inputs.nodes}
    workloads = {w.name: i for i, w in enumerate(inputs.workloads)}
    problems: list[tuple[str, str]] = []
    resolved: list[ResolvedReplica] = []
    used: dict[tuple[str, int], list[tuple[str, float]]] = defaultdict(list)
    for index, assignment in enumerate(plan.spec.assignments):
        label = assignment_label(index, assignment)
        before = len(problems)
        if assignment.workload not in workloads:
            known = ", ".join(sorted(workloads)) or "none"
            problems.append((label, f"unknown workload {assignment.workload!r} (known: {known})"))
        node = nodes.get(assignment.node)
        if node is None:
            problems.append((label, f"node {assignment.node!r} is not among the given nodes"))
        if node is None or len(problems) > before:
            continue
        groups = _gpu_groups(node)
        count = len(groups)
        outside = [g for g in assignment.gpus if g >= count]
        if outside:
            problems.append(
                (
                    label,
                    f"GPU index {', '.join(map(str, outside))} out of range: {node.name} has "
                    f"{count} GPU(s), indices 0-{count - 1}",
                )
            )
            continue
        models = {groups[g][0] for g in assignment.gpus}
        if len(models) > 1:
            problems.append((label, f"GPUs {assignment.gpus} are of different models {models}"))
            continue
        gpu_id, group = groups[assignment.gpus[0]]
        if gpu_id not in inputs.catalog.gpus:
            problems.append((label, f"GPU model {gpu_id!r} is not in the catalog"))
            continue
        for gpu in assignment.gpus:
            used[(node.name, gpu)].append((label, 1.0 / assignment.gpu_share))
        price = node.spec.price_per_hour / node.spec.gpu_count
        resolved.append(
            ResolvedReplica(
                label=label,
                workload=workloads[assignment.workload],
                node=node,
                gpu_id=gpu_id,
                gpu=effective_gpu(inputs.catalog.gpus[gpu_id], group),
                assignment=assignment,
                cost_per_hour=price * assignment.tensor_parallel / assignment.gpu_share,
            )
        )
    for (node_name, gpu), users in sorted(used.items()):
        total = sum(share for _, share in users)
        if total > 1 + SHARE_TOLERANCE:
            problems.append(
                (
                    users[-1][0],
                    f"{node_name} GPU {gpu} is given out {total:.2f} times over by "
                    + "; ".join(label for label, _ in users),
                )
            )
    if problems:
        raise PlanReferenceError(problems)
    return resolved


def _gpu_groups(node: Node) -> list[tuple[str, GPUGroup]]:
    """(GPU model id, its group) for each GPU index of the node (groups are numbered in order)."""
    return [(group.model, group) for group in node.spec.gpus for _ in range(group.count)]


def model_of(workload: InferenceWorkload, catalog: Catalog) -> tuple[str, ModelArchitectureSpec]:
    reference = workload.spec.model
    if isinstance(reference, str):
        return reference, catalog.models[reference]
    return f"inline:{workload.name}", reference


class _Predictors:
    """One performance-model ``Predictor`` per distinct replica configuration and derate."""

    def __init__(self, inputs: SimInputs) -> None:
        self._inputs = inputs
        self._book = ProfileBook.from_documents(inputs.profiles, inputs.catalog)
        self._found: dict[tuple[object, ...], Predictor] = {}

    def get(self, replica: ResolvedReplica, derate: float) -> Predictor:
        workload = self._inputs.workloads[replica.workload]
        model_id, model = model_of(workload, self._inputs.catalog)
        a = replica.assignment
        interconnect = replica.node.spec.interconnect
        key = (model_id, replica.gpu_id, replica.gpu.memory_gib, replica.gpu.memory_bandwidth_gbps,
               a.precision, workload.spec.engine, a.tensor_parallel, a.gpu_share, interconnect,
               derate)  # fmt: skip
        found = self._found.get(key)
        if found is None:
            found = Predictor(
                model, share_of(replica.gpu, a.gpu_share), a.precision, workload.spec.engine,
                a.tensor_parallel, derate, interconnect, profiles=self._book, model_id=model_id,
                gpu_id=replica.gpu_id if a.gpu_share == 1 else None,
            )  # fmt: skip
            self._found[key] = found
        return found


def build_world(
    plan: PlacementPlan,
    inputs: SimInputs,
    truth: GroundTruth,
    cold: ColdStartSettings | None = None,
) -> World:
    """The replicas, network and outages a run of ``plan`` needs; with ``cold``, restarts take
    their cold start and the plan's ``prewarm`` entries are standbys (``coldstart``)."""
    resolved = resolve(plan, inputs)
    predictors = _Predictors(inputs)
    regions = sorted({s.region for w in inputs.workloads for s in w.spec.traffic.sources})
    network = _Network(inputs, regions)
    problems: list[tuple[str, str]] = []
    replicas: list[ReplicaSetup] = []
    for replica in resolved:
        setup = _replica_setup(replica, inputs, truth, predictors, network)
        if isinstance(setup, str):
            problems.append((replica.label, setup))
        elif cold is None:
            replicas.append(setup)
        else:
            restart_s = start_s(predictors.get(replica, 0.0), replica.node, PrewarmLevel.DISK)
            replicas.append(replace(setup, restart_s=restart_s))
    if cold is not None:
        replicas.extend(_standbys(plan, inputs, truth, predictors, network, cold, problems))
    if problems:
        raise PlanReferenceError(problems)
    costs = [0.0] * len(inputs.workloads)
    for replica in resolved:
        costs[replica.workload] += replica.cost_per_hour
    workloads = tuple(
        WorkloadSetup(
            name=w.name,
            ttft_slo_ms=w.spec.slo.ttft_ms,
            itl_slo_ms=w.spec.slo.itl_ms,
            mean_prompt_tokens=w.spec.traffic.prompt_tokens,
            mean_output_tokens=w.spec.traffic.output_tokens,
            regions=_regions(w),
            cost_per_hour=costs[i],
        )
        for i, w in enumerate(inputs.workloads)
    )
    outages = {name: node.outages for name, node in truth.nodes.items() if node.outages}
    return World(workloads, tuple(replicas), outages, cold.detect_s if cold else 0.0)


def _standbys(
    plan: PlacementPlan,
    inputs: SimInputs,
    truth: GroundTruth,
    predictors: _Predictors,
    network: _Network,
    cold: ColdStartSettings,
    problems: list[tuple[str, str]],
) -> list[ReplicaSetup]:
    """The plan's prewarm entries as standby replicas (checked like assignments)."""
    entries = plan.spec.prewarm
    as_plan = plan.model_copy(
        update={
            "spec": PlacementPlanSpec(
                assignments=[
                    Assignment(
                        workload=p.workload, node=p.node, gpus=p.gpus, precision=p.precision,
                        tensor_parallel=p.tensor_parallel, gpu_share=p.gpu_share,
                    )
                    for p in entries
                ]
            )
        }
    )  # fmt: skip
    try:
        resolved = resolve(as_plan, inputs)
    except PlanReferenceError as error:
        problems.extend((f"prewarm: {label}", what) for label, what in error.problems)
        return []
    standbys = []
    for entry, replica in zip(entries, resolved, strict=True):
        setup = _replica_setup(replica, inputs, truth, predictors, network)
        if isinstance(setup, str):
            problems.append((f"prewarm: {replica.label}", setup))
            continue
        level = entry.level if cold.prewarm else None
        took_s = start_s(predictors.get(replica, 0.0), replica.node, level)
        label = f"standby ({entry.level.value if level else 'cold'}) {replica.label}"
        standbys.append(replace(setup, label=label, standby=True, start_s=took_s))
    return standbys


def _replica_setup(
    replica: ResolvedReplica,
    inputs: SimInputs,
    truth: GroundTruth,
    predictors: _Predictors,
    network: _Network,
) -> ReplicaSetup | str:
    """The replica's true speeds, limits and RTTs, or why it cannot run at all."""
    thermal = truth.settings.thermal
    normal = predictors.get(replica, 0.0 if thermal else replica.node.throttle_ratio)
    if normal.unsupported is not None:
        return normal.unsupported
    kv_tokens = normal.max_sequences(1)
    if kv_tokens < 1:
        memory = normal.memory
        return (
            f"the weights ({memory.weights_gib:.1f} GiB per GPU) leave no KV cache in "
            f"{memory.memory_gib:.1f} GiB"
        )
    node_truth = truth.nodes[replica.node.name]
    workload = inputs.workloads[replica.workload]
    a = replica.assignment
    config = (replica.gpu_id, model_of(workload, inputs.catalog)[0], a.precision.value,
              workload.spec.engine.value, a.tensor_parallel)  # fmt: skip
    bias = truth.bias.for_replica(config, replica.gpu.architecture)
    factors = (node_truth.decode_factor, node_truth.prefill_factor, bias)
    throttled = PredictorSteps(predictors.get(replica, 1.0), *factors) if thermal else None
    node = replica.node.name
    return ReplicaSetup(
        label=replica.label,
        workload=replica.workload,
        node=node,
        speed=SpeedSchedule(
            PredictorSteps(normal, *factors),
            throttled,
            node_truth.throttle_toggles_s,
            node_truth.throttled_at_start,
        ),
        limits=ReplicaLimits(kv_tokens=kv_tokens),
        rtt_p50_ms=tuple(network.p50_ms(r, node) for r in _regions(workload)),
        rtt_sigma=tuple(network.sigma(r, node) for r in _regions(workload)),
    )


def _regions(workload: InferenceWorkload) -> tuple[str, ...]:
    return tuple(s.region for s in workload.spec.traffic.sources)


class _Network:
    """p50 RTT and lognormal jitter from each client region to each node, from the topology."""

    def __init__(self, inputs: SimInputs, regions: Sequence[str]) -> None:
        from gridplace.topology import Topology

        self._lookup = Topology.build(inputs.nodes, inputs.probes).latency_lookup(regions)

    def p50_ms(self, region: str, node: str) -> float:
        return self._lookup.value_ms(region, node, Percentile.P50)

    def sigma(self, region: str, node: str) -> float:
        """Sigma of a lognormal with this pair's p50 whose p99 is the pair's p99."""
        p50 = self._lookup.value_ms(region, node, Percentile.P50)
        p99 = self._lookup.value_ms(region, node, Percentile.P99)
        if p50 <= 0 or p99 <= p50:
            return 0.0
        return math.log(p99 / p50) / P99_Z
