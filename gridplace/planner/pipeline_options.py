"""Pipeline options: a workload's replica split over several nodes as stages (issue 19).

Owns: for a workload that allows pipelines (``spec.pipeline``), a bounded set of concrete node
tuples, each predicted as a pipeline (``pipeline_predict``); the ones that meet the SLO become
``Option``s with ``stages``, the closest miss leaves a ``Rejection`` (``pipeline-vram``,
``pipeline-itl``). Must not: state a model constraint (``pipeline_model``) or do I/O.

Candidates, and why the bound is safe:
- per precision, the eligible pools (trust met, precision supported) are grouped by region; a
  tuple holds the model with the KV cache of batch 1 (the fewest nodes) or of batch 8 (room to
  batch: ``SIZING_BATCHES``); nodes are taken in two orders, cheapest per layer held (the price
  of the node's GPUs / the layers they hold) and fewest stages (most layers per node) first; a
  tuple ends when it holds every layer, and holds at most ``pipeline.maxStages`` nodes. Nodes of
  a pool are interchangeable (same GPUs, price, region, provider, reliability), so which of
  them a tuple takes changes no rule: disjoint tuples, ``PER_GROUP`` per order and region, are
  all the model needs to place that many pipelines there. A group stops at its first tuple that
  misses the rules or is not cheaper than one node, or once it holds what the demand needs
  (later tuples take the same or worse-ranked pools).
- one tuple across regions (regions nearest the first traffic source first) only when no region
  alone holds the model: every region crossed adds its latency to every token.
- a pipeline is kept only when the workload has no single-node option or it costs less per
  request/s than the cheapest one: a model that fits one node is split only when that is better.
  At most ``MAX_PIPELINES`` per workload, cheapest per request/s first.

Per tuple, the batch in ``BATCHES`` with the largest capacity whose ITL meets the target.
Links: one way = half the p99 RTT from the stage's region to the next stage's node (the
topology lookup; a region's first node of the tuple stands for its nodes), bandwidth = the
smallest ``networkGbps`` of the tuple's nodes (probes measure no bandwidth). Capacity:
``UTILIZATION`` x the saturated rate (the slowest stage per request: its share of a prompt's
prefill + output tokens x its decode step / batch; and the tokens/s the micro-batches in flight
allow). TTFT per source: the pipeline's TTFT for one prompt + the p99 RTT from the source to the
first stage's node (load kept at ``UTILIZATION`` instead of a queueing model).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gridplace.planner.pipeline_predict import (
    Link,
    LinkLookup,
    ModelLoad,
    PipelinePrediction,
    Refusal,
    StageNode,
    most_layers,
    predict_pipeline,
    split_layers,
    stage_vram_gib,
)
from gridplace.planner.ports import PredictionQuery, RttLookup, StageFigures, StagePredictor
from gridplace.planner.problem import (
    GpuPool,
    Option,
    Rejection,
    StagePart,
    WorkloadDemand,
)
from gridplace.planner.rules import Reason, implements
from gridplace.specs import GPUModelSpec, InferenceWorkload, ModelArchitectureSpec, Node, Precision

BATCHES = (1, 2, 4, 8, 16, 32, 64)  # sequences in flight per micro-batch
# Tuples are sized to hold the model with the KV cache of these batches: the fewest nodes, and
# enough for a batch that fills the pipe (a tuple with no KV room left runs at batch 1).
SIZING_BATCHES = (1, 8)
PER_GROUP = 6  # disjoint node tuples per region and order
MAX_PIPELINES = 16  # pipeline options per workload
UTILIZATION = 0.7  # of a pipeline's saturated rate booked as its capacity
ACTIVATION_BYTES = 2  # bf16/fp16 activations between stages

NodeTuple = tuple[tuple[int, str], ...]  # (pool, node) per stage, in order


@dataclass(frozen=True)
class _Ask:
    """One workload at one precision: what the stage predictor is asked."""

    workload: InferenceWorkload
    demand: WorkloadDemand
    model_id: str
    model: ModelArchitectureSpec
    precision: Precision
    rank: int


class PipelineEnumerator:
    """Pipeline options of compile's workloads over one grid (see the module)."""

    def __init__(
        self,
        pools: Sequence[GpuPool],
        pool_gpus: Sequence[GPUModelSpec],
        nodes: Sequence[Node],
        latency: RttLookup,
        stage_predictor: StagePredictor | None,
    ) -> None:
        self.pools = pools
        self.pool_gpus = pool_gpus
        self.network_gbps = {n.name: n.spec.network_gbps for n in nodes}
        self.latency = latency
        self._predictor = stage_predictor

    def _figures(self, ask: _Ask, pool: int, batch: int) -> StageFigures | None:
        if self._predictor is None:  # the performance model, unless compile was given one
            from gridplace.planner.predictor import make_stage_predictor

            self._predictor = make_stage_predictor()
        spec, gpus = ask.workload.spec, self.pools[pool]
        return self._predictor(
            PredictionQuery(
                model=ask.model, model_id=ask.model_id, gpu=self.pool_gpus[pool],
                gpu_id=gpus.gpu_model, precision=ask.precision, engine=spec.engine,
                tensor_parallel=gpus.gpus_per_node, share=1, interconnect=gpus.interconnect,
                throttle_ratio=gpus.throttle_ratio, ttft_budget_ms=spec.slo.ttft_ms,
                itl_slo_ms=spec.slo.itl_ms, prompt_tokens=spec.traffic.prompt_tokens,
                output_tokens=spec.traffic.output_tokens, engine_options=spec.engine_options,
            ),
            batch,
        )  # fmt: skip

    def options(
        self,
        workload: InferenceWorkload,
        demand: WorkloadDemand,
        model: tuple[str, ModelArchitectureSpec],
        eligible: Sequence[int],
        single: Sequence[Option],
    ) -> tuple[list[Option], list[Rejection]]:
        """The workload's pipeline options (indices to be set by compile) and, when none meets
        its rules, the rejection that came closest."""
        policy = workload.spec.pipeline
        if policy is None or not eligible:
            return [], []
        best_single = min(
            (o.cost_per_hour / o.capacity_rps for o in single if o.capacity_rps > 0),
            default=math.inf,
        )
        found: list[Option] = []
        misses: list[Rejection] = []
        for rank, precision in enumerate(workload.spec.precisions):
            ask = _Ask(workload, demand, model[0], model[1], precision, rank)
            groups, short = self._tuples(ask, eligible, policy.max_stages)
            misses.extend(short)
            for group in groups:
                made, missed = self._group(ask, group, best_single)
                found.extend(o for o in made if o.stages not in {f.stages for f in found})
                misses.extend(missed)
        if found:
            found.sort(key=lambda o: (o.cost_per_hour / o.capacity_rps, o.itl_ms))
            return found[:MAX_PIPELINES], []
        if single or not misses:
            return [], []
        # No pipeline over any of the eligible nodes made it: the closest miss speaks for them.
        count = sum(self.pools[p].node_count for p in eligible)
        return [], [replace(min(misses, key=_closeness), nodes=count, pools=tuple(eligible))]

    def _group(
        self, ask: _Ask, group: Sequence[NodeTuple], best_single: float
    ) -> tuple[list[Option], list[Rejection]]:
        """The options of a group's tuples, in its order, as many as the demand needs (with its
        node failures); the group stops at its first tuple that misses the rules or is not
        cheaper per request/s than ``best_single``: later tuples take the same or worse-ranked
        pools."""
        made: list[Option] = []
        for nodes in group:
            result = self._best_point(ask, nodes)
            if not isinstance(result, Option):
                return made, [result]
            if result.cost_per_hour / result.capacity_rps >= best_single:
                break
            made.append(result)
            demand = ask.demand
            needed = math.ceil(demand.booked_rps / result.capacity_rps) + demand.node_failures
            if len(made) >= needed:
                break
        return made, []

    def _load(self, ask: _Ask, pools: Sequence[int], batch: int) -> ModelLoad | None:
        """The model at ``batch`` as the stages' pools see it (the largest figures of them)."""
        figures = [self._figures(ask, p, batch) for p in pools]
        if any(f is None for f in figures):
            return None
        known = [f for f in figures if f is not None]
        return ModelLoad(
            layers=ask.model.layers,
            weights_gib=max(f.weights_gib for f in known),
            kv_cache_gib=max(f.kv_cache_gib for f in known),
            reserve_gib=max(f.reserve_gib for f in known),
            hidden=ask.model.hidden_size,
            bytes_per_value=ACTIVATION_BYTES,
        )

    def _stage_node(self, ask: _Ask, pool: int, node: str, batch: int) -> StageNode:
        figures = self._figures(ask, pool, batch)
        assert figures is not None
        gpus = self.pools[pool]
        return StageNode(
            node, gpus.region, gpus.gpus_per_node, figures.memory_gib, figures.decode_ms,
            figures.prefill_ms,
        )  # fmt: skip

    def _held(self, ask: _Ask, pools: Sequence[int], batch: int) -> dict[int, int]:
        """Layers one node of each pool holds with the KV cache of ``batch`` (0: unsupported)."""
        held = {}
        for p in pools:
            load = self._load(ask, [p], batch)
            node = self.pools[p].node_names[0]
            held[p] = 0 if load is None else most_layers(load, self._stage_node(ask, p, node, 1))
        return held

    def _tuples(
        self, ask: _Ask, eligible: Sequence[int], max_stages: int
    ) -> tuple[list[list[NodeTuple]], list[Rejection]]:
        """Groups of node tuples (per region, sizing batch and order: see the module), and a
        rejection per region whose nodes cannot hold the model even at batch 1."""
        groups: list[list[NodeTuple]] = []
        short: list[Rejection] = []
        layers = ask.model.layers
        by_region: dict[str, list[int]] = defaultdict(list)
        for sizing in SIZING_BATCHES:
            held = self._held(ask, eligible, sizing)
            usable = [p for p in eligible if held[p] > 0]
            by_region = defaultdict(list)
            for p in usable:
                by_region[self.pools[p].region].append(p)
            for region, pools in sorted(by_region.items()):
                for order in (_cheapest_per_layer, _fewest_stages):
                    ranked = sorted(pools, key=lambda p: order(self.pools[p], held[p], layers))
                    made, missing = _fill(self.pools, ranked, held, layers, max_stages, PER_GROUP)
                    if made and made not in groups:
                        groups.append(made)
                    if missing is not None and not made and sizing == 1:
                        short.append(self._vram_rejection(ask, ranked, missing, region))
            if not groups and len(by_region) > 1:
                ranked = sorted(usable, key=lambda p: (self._client_rtt(ask, p), -held[p]))
                made, missing = _fill(self.pools, ranked, held, layers, max_stages, 1)
                groups.extend([made] if made else [])
                if missing is not None and not made and sizing == 1:
                    short.append(self._vram_rejection(ask, ranked, missing, "all regions"))
        return groups, short

    def _client_rtt(self, ask: _Ask, pool: int) -> float:
        source = ask.demand.sources[0][0]
        return self.latency.rtt_p99_ms(source, self.pools[pool].node_names[0])

    def _vram_rejection(self, ask: _Ask, pools: Sequence[int], held: int, where: str) -> Rejection:
        policy = ask.workload.spec.pipeline
        label = f"{ask.precision.value} pipeline"
        reason = pipeline_vram(label, held, ask.model.layers, policy.max_stages if policy else 1)
        assert reason is not None
        reason = replace(reason, detail=f"{reason.detail} in {where}")
        nodes = sum(self.pools[p].node_count for p in pools)
        return Rejection(ask.demand.index, pools[0], "pipeline-vram", reason, nodes, tuple(pools))

    def _link(self, nodes: NodeTuple) -> LinkLookup:
        first_in: dict[str, str] = {}
        for pool, node in nodes:
            first_in.setdefault(self.pools[pool].region, node)
        gbps = min(self.network_gbps.get(n, 1.0) for _, n in nodes)

        def link(a: str, b: str) -> Link:
            return Link(self.latency.rtt_p99_ms(a, first_in[b]) / 2, gbps)

        return link

    def _best_point(self, ask: _Ask, nodes: NodeTuple) -> Option | Rejection:
        """The tuple's option at the batch with the most capacity inside the SLO, or why none."""
        spec = ask.workload.spec
        pools = [p for p, _ in nodes]
        best: tuple[float, Option] | None = None
        closest: PipelinePrediction | None = None
        for batch in BATCHES:
            load = self._load(ask, pools, batch)
            stage_nodes = [self._stage_node(ask, p, n, batch) for p, n in nodes]
            stages = split_layers(load, stage_nodes) if load is not None else Refusal("")
            if load is None or isinstance(stages, Refusal):
                break
            prediction = predict_pipeline(
                load, stages, {s.name: s for s in stage_nodes}, self._link(nodes),
                batch=batch, prompt_tokens=spec.traffic.prompt_tokens,
            )  # fmt: skip
            if closest is None or prediction.itl_ms < closest.itl_ms:
                closest = prediction
            if prediction.itl_ms > spec.slo.itl_ms:
                break  # a step only gets longer with a larger batch
            option = self._option(ask, nodes, load, stage_nodes, prediction, batch)
            if option is not None and (best is None or option.capacity_rps > best[0]):
                best = (option.capacity_rps, option)
        if best is not None:
            return best[1]
        if closest is None:
            return self._vram_rejection(ask, pools, 0, self.pools[pools[0]].region)
        label = f"{ask.precision.value} {len(closest.stages)}-stage pipeline"
        family, reason = "pipeline-itl", pipeline_itl(label, closest, spec.slo.itl_ms)
        if reason is None:  # ITL met, TTFT missed from every source
            ttft = closest.ttft_ms + self._client_rtt(ask, pools[0])
            family, reason = "slo-ttft", Reason(label, "ttft", ttft, spec.slo.ttft_ms, "ms")
        return Rejection(ask.demand.index, pools[0], family, reason, len(nodes), tuple(pools))

    def _option(
        self,
        ask: _Ask,
        nodes: NodeTuple,
        load: ModelLoad,
        stage_nodes: Sequence[StageNode],
        prediction: PipelinePrediction,
        batch: int,
    ) -> Option | None:
        """The pipeline as an option, or None when it misses the ITL target or every source's
        TTFT target."""
        spec = ask.workload.spec
        if pipeline_itl("", prediction, spec.slo.itl_ms) is not None:
            return None
        pool_of = {n: p for p, n in nodes}
        first = prediction.stages[0].node
        ttft = {
            region: prediction.ttft_ms + self.latency.rtt_p99_ms(region, first)
            for region, _ in ask.demand.sources
        }
        servable = tuple(r for r, t in ttft.items() if t <= spec.slo.ttft_ms)
        if not servable:
            return None
        parts = []
        for stage in prediction.stages:
            pool = self.pools[pool_of[stage.node]]
            parts.append(
                StagePart(
                    stage.node, pool.index, pool.gpu_indices, stage.first, stage.last,
                    stage_vram_gib(load, stage.layers, pool.gpus_per_node),
                    pool.tdp_watts * pool.gpus_per_node,
                )
            )  # fmt: skip
        by_name = {s.name: s for s in stage_nodes}
        output = spec.traffic.output_tokens
        per_request_ms = [  # a stage's time per request: its prefill share + its decode steps
            (by_name[s.node].prefill_ms + output * by_name[s.node].decode_ms / batch)
            * s.layers
            / load.layers
            for s in prediction.stages
        ]
        saturated = min(prediction.tokens_per_s / output, 1e3 / max(per_request_ms))
        first_pool = self.pools[parts[0].pool]
        return Option(
            index=0, workload=ask.demand.index, pool=first_pool.index, precision=ask.precision,
            tensor_parallel=first_pool.gpus_per_node, share=1, ttft_ms=ttft,
            itl_ms=prediction.itl_ms, capacity_rps=UTILIZATION * saturated,
            vram_gib=max(p.vram_gib for p in parts),
            cost_per_hour=sum(
                self.pools[p.pool].price_per_gpu_hour * len(p.gpus) for p in parts
            ),
            power_watts=sum(p.power_watts for p in parts), precision_rank=ask.rank,
            servable_sources=servable, stages=tuple(parts), load=load,
            handoff_ms=prediction.network_ms_per_token,
            tokens_per_s=UTILIZATION * saturated * output,
        )  # fmt: skip


@implements("pipeline-vram")
def pipeline_vram(label: str, held: int, layers: int, max_stages: int) -> Reason | None:
    """Hard: the pipeline's nodes (at most pipeline.maxStages) hold every layer with its KV
    cache at batch 1 (``pipeline_predict.most_layers``)."""
    if held >= layers:
        return None
    detail = f"{max_stages} nodes hold {held} of {layers} layers"
    return Reason(label, "pipeline-vram", layers, held, detail=detail)


@implements("pipeline-itl")
def pipeline_itl(label: str, prediction: PipelinePrediction, itl_ms: float) -> Reason | None:
    """Hard: the pipeline's ITL (stage decode steps + hand-offs over the links) is within the
    target; a miss names the regions and the network's share."""
    if prediction.itl_ms <= itl_ms:
        return None
    return Reason(
        label, "pipeline-itl", prediction.itl_ms, itl_ms, "ms",
        network_ms=prediction.network_ms_per_token, detail=", ".join(prediction.regions),
    )  # fmt: skip


def _cheapest_per_layer(pool: GpuPool, held: int, layers: int) -> tuple[float, int, str]:
    return (pool.price_per_gpu_hour * pool.gpus_per_node / held, -held, pool.key)


def _fewest_stages(pool: GpuPool, held: int, layers: int) -> tuple[float, int, str]:
    return (math.ceil(layers / held), -held, pool.key)


def _fill(
    pools: Sequence[GpuPool],
    ranked: Sequence[int],
    held: dict[int, int],
    layers: int,
    max_stages: int,
    count: int,
) -> tuple[list[NodeTuple], int | None]:
    """Up to ``count`` disjoint tuples of whole nodes taken in ``ranked`` pools' order, each
    holding every layer with at most ``max_stages`` nodes; the layers the first short tuple held
    when none could be made (None when one could)."""
    queue = [(p, n) for p in ranked for n in pools[p].node_names]
    made: list[NodeTuple] = []
    current: list[tuple[int, str]] = []
    total = 0
    first_short: int | None = None
    for pool, node in queue:
        current.append((pool, node))
        total += held[pool]
        if total >= layers:
            made.append(tuple(current))
            current, total = [], 0
            if len(made) == count:
                break
        elif len(current) == max_stages:
            first_short = total if first_short is None else first_short
            break
    if not made and first_short is None:
        first_short = total
    return made, (None if made else first_short)


def _closeness(rejection: Rejection) -> tuple[int, float]:
    """ITL misses came closer than VRAM ones; then the smaller figure."""
    return (0 if rejection.family != "pipeline-vram" else 1, rejection.reason.distance)
