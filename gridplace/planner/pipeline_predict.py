"""One replica as a pipeline of stages: which node holds which layers, and what the pipeline's
TTFT, ITL and throughput are over the measured network.

A stage is a contiguous layer range ``[first, last)`` on one node (its GPUs tensor parallel
inside the node). The figures scale the whole model's per-step times from the performance
model by the stage's share of the layers (layers are identical; embeddings and head are small
next to 80 layers and are counted with the layers):

- VRAM per GPU: (weights + KV cache at the replica's batch and context) x share / GPUs +
  the engine's reserve, which every stage pays;
- per token, a stage hands the next the activations: hidden x bytes per value x tokens in flight,
  over the link's bandwidth, after its one-way latency;
- ITL = sum of stage decode times + sum of hand-offs + the client's RTT;
- TTFT: the prompt goes through in chunks, so stages overlap: the first chunk crosses every stage
  and link, each later chunk adds the slowest stage's chunk time; + the client's RTT;
- throughput: with one micro-batch per stage in flight, the slowest stage (or the whole round
  trip, when fewer micro-batches than that are in flight) sets the pace.

A model that fits one node is one stage: ``split_layers`` splits only when it must.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelLoad:
    """The whole model at one operating point, from the performance model."""

    layers: int
    weights_gib: float
    kv_cache_gib: float  # at the replica's batch and context
    reserve_gib: float  # per GPU
    hidden: int
    bytes_per_value: int  # activations (2: fp16/bf16)


@dataclass(frozen=True)
class StageNode:
    name: str
    region: str
    gpus: int
    memory_gib: float  # per GPU
    decode_ms: float  # the whole model's decode step on this node's GPUs at the operating point
    prefill_ms: float  # the whole model's prefill of the prompt on this node's GPUs


@dataclass(frozen=True)
class Link:
    one_way_ms: float  # p99, for latency targets
    bandwidth_gbps: float


@dataclass(frozen=True)
class Stage:
    node: str
    gpus: int
    first: int
    last: int  # exclusive

    @property
    def layers(self) -> int:
        return self.last - self.first


@dataclass(frozen=True)
class PipelinePrediction:
    stages: tuple[Stage, ...]
    ttft_ms: float
    itl_ms: float
    tokens_per_s: float
    network_ms_per_token: float  # hand-offs between stages, one token
    regions: tuple[str, ...]  # of the stages, in order, repeats dropped


@dataclass(frozen=True)
class Refusal:
    reason: str


LinkLookup = Callable[[str, str], Link]  # region, region -> the link between them


def stage_vram_gib(load: ModelLoad, layers: int, gpus: int) -> float:
    """Per-GPU VRAM of a stage holding ``layers`` of the model's layers."""
    share = layers / load.layers
    return (load.weights_gib + load.kv_cache_gib) * share / gpus + load.reserve_gib


def most_layers(load: ModelLoad, node: StageNode) -> int:
    """The most layers whose stage fits ``node``'s VRAM."""
    per_layer = (load.weights_gib + load.kv_cache_gib) / load.layers / node.gpus
    room = node.memory_gib - load.reserve_gib
    return max(0, min(load.layers, math.floor(room / per_layer + 1e-9)))


def handoff_ms(load: ModelLoad, tokens: int, link: Link) -> float:
    """One stage-to-stage hand-off: activations of ``tokens`` over ``link``, after its latency."""
    bits = load.hidden * load.bytes_per_value * tokens * 8
    return link.one_way_ms + bits / (link.bandwidth_gbps * 1e9) * 1e3


def split_layers(load: ModelLoad, nodes: Sequence[StageNode]) -> tuple[Stage, ...] | Refusal:
    """The fewest of ``nodes`` (in order) that hold the model, one stage each, layers spread in
    proportion to each node's speed within its VRAM; one stage when one node holds the model.
    Refused, with the numbers, when they cannot hold it all."""
    chosen: list[StageNode] = []
    held = 0
    for node in nodes:
        if held >= load.layers:
            break
        if most_layers(load, node) > 0:
            chosen.append(node)
            held += most_layers(load, node)
    if held < load.layers:
        per_layer = (load.weights_gib + load.kv_cache_gib) / load.layers
        each = ", ".join(f"{n.name} {most_layers(load, n)}" for n in nodes)
        return Refusal(
            f"{len(nodes)} nodes hold {held} of {load.layers} layers "
            f"({per_layer:.2f} GiB per layer + {load.reserve_gib:.2f} GiB reserve per GPU; "
            f"layers per node: {each})"
        )
    counts = _balanced(load.layers, [(1 / n.decode_ms, most_layers(load, n)) for n in chosen])
    stages: list[Stage] = []
    first = 0
    for node, k in zip(chosen, counts, strict=True):
        stages.append(Stage(node.name, node.gpus, first, first + k))
        first += k
    return tuple(stages)


def _balanced(layers: int, nodes: list[tuple[float, int]]) -> list[int]:
    """Layers per node in proportion to speed, each within its most (water-filling)."""
    counts = [0] * len(nodes)
    for _ in range(layers):
        # the next layer goes where it slows the stage least: lowest (count + 1) / speed
        open_ = [i for i, (_, most) in enumerate(nodes) if counts[i] < most]
        best = min(open_, key=lambda i: ((counts[i] + 1) / nodes[i][0], i))
        counts[best] += 1
    return counts


def predict_pipeline(
    load: ModelLoad,
    stages: Sequence[Stage],
    nodes: dict[str, StageNode],
    links: LinkLookup,
    *,
    batch: int,
    prompt_tokens: int,
    chunk_tokens: int = 512,
    client_rtt_ms: float = 0.0,
) -> PipelinePrediction:
    """TTFT, ITL and throughput of ``stages`` (see the module for the model)."""
    share = [s.layers / load.layers for s in stages]
    decode = [nodes[s.node].decode_ms * f for s, f in zip(stages, share, strict=True)]
    chunks = max(1, math.ceil(prompt_tokens / chunk_tokens))
    chunk = [nodes[s.node].prefill_ms * f / chunks for s, f in zip(stages, share, strict=True)]
    hops = [
        links(nodes[a.node].region, nodes[b.node].region) for a, b in itertools.pairwise(stages)
    ]
    token_net = sum(handoff_ms(load, batch, h) for h in hops)
    chunk_net = sum(handoff_ms(load, min(chunk_tokens, prompt_tokens), h) for h in hops)
    itl = sum(decode) + token_net + client_rtt_ms
    ttft = sum(chunk) + chunk_net + (chunks - 1) * max(chunk) + client_rtt_ms
    round_trip_ms = sum(decode) + token_net
    in_flight = len(stages)  # one micro-batch of ``batch`` per stage
    tokens_per_s = min(batch / max(decode), in_flight * batch / round_trip_ms) * 1e3
    regions: list[str] = []
    for s in stages:
        region = nodes[s.node].region
        if not regions or regions[-1] != region:
            regions.append(region)
    return PipelinePrediction(tuple(stages), ttft, itl, tokens_per_s, token_net, tuple(regions))


def plan_pipeline(
    load: ModelLoad,
    nodes: Sequence[StageNode],
    links: LinkLookup,
    *,
    itl_target_ms: float,
    batch: int,
    prompt_tokens: int,
    client_rtt_ms: float = 0.0,
) -> PipelinePrediction | Refusal:
    """The lowest-ITL pipeline over ``nodes``: within one region when one region holds the model,
    else over all nodes grouped by region; refused when even that misses the ITL target (the
    network named) or the nodes cannot hold the model."""
    by_name = {n.name: n for n in nodes}
    candidates: list[Sequence[StageNode]] = [
        [n for n in nodes if n.region == region] for region in sorted({n.region for n in nodes})
    ]
    candidates.append(sorted(nodes, key=lambda n: (n.region, -n.memory_gib * n.gpus)))
    best: PipelinePrediction | None = None
    refusal: Refusal | None = None
    for group in candidates:
        stages = split_layers(load, group)
        if isinstance(stages, Refusal):
            refusal = refusal or stages
            continue
        prediction = predict_pipeline(
            load,
            stages,
            by_name,
            links,
            batch=batch,
            prompt_tokens=prompt_tokens,
            client_rtt_ms=client_rtt_ms,
        )
        if best is None or prediction.itl_ms < best.itl_ms:
            best = prediction
    if best is None:
        return refusal or Refusal("no nodes")
    if best.itl_ms > itl_target_ms:
        return Refusal(
            f"{len(best.stages)} stages over {', '.join(best.regions)} need "
            f"{best.network_ms_per_token:.0f} ms of network per token "
            f"(ITL {best.itl_ms:.0f} ms) > {itl_target_ms:g} ms ITL"
        )
    return best


def stage_errors(
    load: ModelLoad, stages: Sequence[Stage], nodes: dict[str, StageNode]
) -> list[str]:
    """What is wrong with ``stages`` as one replica: gaps, overlaps, layers not covered once,
    a stage over its node's VRAM, a node used twice (an oracle's check; empty when sound)."""
    errors: list[str] = []
    expected = 0
    for i, s in enumerate(stages):
        if s.first != expected:
            errors.append(f"stage {i} on {s.node} starts at layer {s.first}, expected {expected}")
        if s.last <= s.first:
            errors.append(f"stage {i} on {s.node} holds no layers [{s.first}, {s.last})")
        expected = max(expected, s.last)
        node = nodes.get(s.node)
        if node is None:
            errors.append(f"stage {i}: unknown node {s.node}")
            continue
        vram = stage_vram_gib(load, s.layers, s.gpus)
        if vram > node.memory_gib:
            errors.append(
                f"stage {i} on {s.node}: layers [{s.first}, {s.last}) need {vram:.1f} GiB per "
                f"GPU > {node.memory_gib:g} GiB"
            )
    if expected != load.layers:
        errors.append(f"stages cover layers up to {expected} of {load.layers}")
    used = [s.node for s in stages]
    errors += [
        f"node {n} holds {used.count(n)} stages" for n in sorted(set(used)) if used.count(n) > 1
    ]
    return errors
