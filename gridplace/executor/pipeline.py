"""Pipeline replicas on the agent's side: which process each stage's node runs, and when.

Owns: the stage roles an agent pulls (``StageRole``), the stages' phases it reads back from the
API (``StagePeer``, ``Pipeline``), the gates (``head_gate``: the first stage's server starts once
every later stage is ready and goes down when one is not; ``ray_head_address``: a vLLM stage joins
the Ray head once the first stage reports it), and the command line of each part
(``stage_launch``, rendered by ``pipeline_commands``). Must not: talk HTTP (``client``), start
processes (``reconcile`` does, with its supervision), or plan anything.

Parts of a pipeline replica, one supervised process each (``ReplicaSpec.part``)::

                 first stage's node                     each later stage's node
    llama.cpp    llama-server --rpc w1,w2 (server)      rpc-server (stage)
    vLLM         ray start --head (stage), then         ray start --address head (stage)
                 vllm serve (server)

A stage's part is reported as the stage (``ready`` once its port answers, or for a Ray worker
once it runs, with the ``host:port`` its peers use); the server is reported as the replica.
Order: llama.cpp workers start at once and the server waits for them; on vLLM the first stage
starts its Ray head, the others join it, then the server starts. A later stage that fails or whose
node is lost takes the server down (stopped, reported failed); it starts again once every stage
is ready, or when the replan moves the pipeline (a new pipeline id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.drivers import (
    LLAMA_CPP_INFLIGHT,
    PROBE_ALIVE,
    PROBE_TCP,
    VLLM_INFLIGHT,
    LaunchSpec,
    LlamaCppDriver,
    Target,
    VllmDriver,
    gpu_environment,
)
from gridplace.executor.errors import DriverError
from gridplace.executor.manifest import DriverKind
from gridplace.executor.pipeline_commands import (
    llama_head,
    ray_head,
    ray_worker,
    rpc_worker,
    same_gpus,
    vllm_serve,
)
from gridplace.specs import Assignment

STAGE = "stage"  # ReplicaSpec.part of a stage's own process; "" is the server
READY = "ready"


@dataclass(frozen=True)
class StageRole:
    """A later stage (index >= 1) this node holds, as the assignment pull lists it."""

    pipeline: str
    stage: int
    assignment: Assignment


@dataclass(frozen=True)
class StagePeer:
    """One stage as the API judged it at this loop."""

    stage: int
    node: str
    phase: str  # pending, starting, ready, failed, lost
    address: str | None = None
    message: str | None = None

    def describe(self) -> str:
        text = f"stage {self.stage} on {self.node} {self.phase}"
        return text + (f" ({self.message})" if self.message else "")


@dataclass(frozen=True)
class Pipeline:
    """A pipeline replica this node holds a stage of."""

    id: str
    assignment: Assignment
    peers: tuple[StagePeer, ...] | None = None  # None: not known this loop (the API is away)

    @property
    def layers(self) -> list[int]:
        return [last - first for first, last in (s.layers for s in self.assignment.stages or [])]


def peers_of(status: Mapping[str, Any]) -> tuple[StagePeer, ...]:
    """The stages of one ``PipelineStatus`` (camelCase JSON) as ``StagePeer``s."""
    return tuple(
        StagePeer(
            stage=int(s["stage"]),
            node=str(s["node"]),
            phase=str(s["phase"]),
            address=s.get("address"),
            message=s.get("message"),
        )
        for s in status.get("stages", [])
    )


def stage_specs(roles: Iterable[StageRole]) -> list[ReplicaSpec]:
    """The later stages' processes this node runs."""
    out = []
    for role in roles:
        stage = (role.assignment.stages or [])[role.stage]
        out.append(
            ReplicaSpec(
                workload=role.assignment.workload,
                gpus=tuple(stage.gpus),
                precision=role.assignment.precision.value,
                tensor_parallel=len(stage.gpus),
                pipeline=role.pipeline,
                stage=role.stage,
                part=STAGE,
            )
        )
    return out


def head_parts(spec: ReplicaSpec, kind: DriverKind) -> list[ReplicaSpec]:
    """The first stage's processes: the server, and before it the Ray head on vLLM."""
    if not spec.pipeline or spec.stage != 0 or spec.part:
        return [spec]
    return [replace(spec, part=STAGE), spec] if kind is DriverKind.VLLM else [spec]


@dataclass(frozen=True)
class Gate:
    """Whether the first stage's server may run now, and why not."""

    go: bool
    workers: tuple[str, ...] = ()  # the later stages' addresses, in order
    why: str = ""  # when not: the stages not ready, each with its phase


def head_gate(pipeline: Pipeline | None) -> Gate:
    """Every later stage ready with an address: go (a server not yet running starts, with the
    addresses in stage order); otherwise not (one not running waits, one running is stopped)."""
    if pipeline is None or pipeline.peers is None:
        return Gate(False, why="the stages' phases are not known (the API did not answer)")
    later = [p for p in pipeline.peers if p.stage >= 1]
    missing = [p for p in later if p.phase != READY or not p.address]
    if not later:
        return Gate(False, why="the API lists no later stage")
    if not missing:
        return Gate(True, workers=tuple(str(p.address) for p in later))
    return Gate(False, why="; ".join(p.describe() for p in missing))


def ray_head_address(pipeline: Pipeline | None) -> str | None:
    """The Ray head's host:port once the first stage reports it ready."""
    peers = pipeline.peers if pipeline else None
    first = next((p for p in peers or () if p.stage == 0), None)
    return first.address if first and first.phase == READY else None


def stage_launch(
    driver: object, target: Target, pipeline: Pipeline, advertise: str, workers: tuple[str, ...]
) -> LaunchSpec:
    """The command line of one part of a pipeline replica on this node (see the module)."""
    spec = target.spec
    env = gpu_environment(target)
    endpoint = f"{target.host}:{target.port}"
    if isinstance(driver, LlamaCppDriver):
        if spec.part == STAGE:
            argv = rpc_worker(driver.rpc_executable, target.host, target.port)
            return LaunchSpec(argv, env, (PROBE_TCP,), (), endpoint=endpoint)
        if target.weights_path is None:
            raise DriverError(
                f"llama.cpp needs a GGUF file for workload {spec.workload!r}: add 'weights' to "
                "its model-manifest entry"
            )
        argv = llama_head(
            driver.executable,
            str(target.weights_path),
            target.host,
            target.port,
            spec.workload,
            list(workers),
            pipeline.layers,
        )
        return LaunchSpec(argv, env, ("/health",), LLAMA_CPP_INFLIGHT, endpoint=endpoint)
    if isinstance(driver, VllmDriver):
        if spec.part == STAGE and spec.stage == 0:
            argv = ray_head(driver.ray_executable, advertise, target.port)
            return LaunchSpec(argv, env, (PROBE_TCP,), (), endpoint=endpoint)
        if spec.part == STAGE:
            head = ray_head_address(pipeline)
            if head is None:
                raise DriverError("the first stage's Ray head is not ready yet")
            argv = ray_worker(driver.ray_executable, head, advertise)
            return LaunchSpec(argv, env, (PROBE_ALIVE,), (), endpoint=endpoint)
        model = str(target.weights_path) if target.weights_path else target.model
        tp = same_gpus(len(s.gpus) for s in pipeline.assignment.stages or [])
        serve = vllm_serve(
            driver.executable,
            model,
            target.host,
            target.port,
            spec.workload,
            pipeline.layers,
            tp,
        )
        return LaunchSpec(
            serve.argv,
            {**env, **serve.env},
            ("/health", "/v1/models"),
            VLLM_INFLIGHT,
            endpoint=endpoint,
        )
    raise DriverError(
        f"pipeline replica {spec.key}: pipelines run on the llama.cpp or vllm driver only"
    )
