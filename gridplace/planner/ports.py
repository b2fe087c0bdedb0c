"""The planner's ports: the protocols it is driven through and the value types that cross them.

``OptionPredictor`` answers a ``PredictionQuery`` with an ``OptionPrediction`` (the performance
model behind ``predictor.make_predictor``); ``RttLookup`` gives network round trips (topology
behind ``network.NetworkLatency``); ``PlannerInputs`` are the validated specs a plan is made from.
Compile and enumeration depend on these, never on what implements them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gridplace.planner.problem import Queueing
from gridplace.specs import (
    Catalog,
    GPUModelSpec,
    InferenceWorkload,
    ModelArchitectureSpec,
    Node,
    PlacementPlan,
    Precision,
)
from gridplace.specs.common import Engine, EngineOptions, Interconnect


@dataclass(frozen=True)
class OptionPrediction:
    """What the performance model says about one replica (network RTT not included)."""

    supported: bool
    reason: str  # why not supported / why it does not fit; "" otherwise
    fits: bool
    vram_gib: float  # per GPU
    vram_available_gib: float  # per GPU (or per share of it)
    prefill_ms: float  # TTFT without network, at the planned load (incl. queueing)
    itl_ms: float
    capacity_rps: float  # per replica inside the SLO (TTFT budget after network), 0 if none
    queueing: Queueing | None = None  # for latency at demand (``at_demand``), when known


@dataclass(frozen=True)
class PredictionQuery:
    """One replica configuration to predict, and the SLO and traffic it must serve."""

    model: ModelArchitectureSpec
    model_id: str
    gpu: GPUModelSpec  # after the node's overrides, whole GPU
    gpu_id: str
    precision: Precision
    engine: Engine
    tensor_parallel: int
    share: int  # replicas per GPU: the replica gets 1/share of it
    interconnect: Interconnect
    throttle_ratio: float
    ttft_budget_ms: float  # the TTFT target minus the best network RTT
    itl_slo_ms: float
    prompt_tokens: int
    output_tokens: int
    engine_options: EngineOptions | None = None  # the workload's engine settings


class OptionPredictor(Protocol):
    """What compile asks about one replica configuration (``predictor.make_predictor``)."""

    def __call__(self, query: PredictionQuery) -> OptionPrediction: ...


@dataclass(frozen=True)
class StageFigures:
    """The whole model on one node's GPUs (tensor parallel) at one batch, for splitting it into
    pipeline stages (``pipeline_options``); it need not fit the node."""

    weights_gib: float  # the whole model, all the node's GPUs together
    kv_cache_gib: float  # the whole model's, at the batch and the traffic's context
    reserve_gib: float  # per GPU
    memory_gib: float  # per GPU
    decode_ms: float  # one decode step of the whole model at the batch
    prefill_ms: float  # the whole model's prefill of one prompt


class StagePredictor(Protocol):
    """What compile asks to split a model over nodes (``predictor.make_stage_predictor``):
    None when the GPU or engine cannot run the query's precision."""

    def __call__(self, query: PredictionQuery, batch: int) -> StageFigures | None: ...


class RttLookup(Protocol):
    """Network round trips from clients to nodes (``network.NetworkLatency`` over topology)."""

    def rtt_p99_ms(self, region: str, node: str) -> float:
        """p99 round trip from clients in ``region`` to ``node``, ms (estimated if not probed)."""
        ...


@dataclass(frozen=True)
class PlannerInputs:
    """The validated specs a plan is made from."""

    nodes: Sequence[Node]
    workloads: Sequence[InferenceWorkload]
    catalog: Catalog
    previous: PlacementPlan | None = None
    budget_per_hour: float | None = None
    headroom: float | None = None  # every workload booked at demand x (1 + this); None: booking.py
    # (workload, node) pairs whose node holds the workload's weights (its agent reported them
    # cached or loaded), besides the previous plan's standbys: a replica started there is warm.
    warm: Sequence[tuple[str, str]] = ()
