"""Command lines of a pipeline replica (stages on several nodes), per node, for the two real ways
of running one: llama.cpp RPC and vLLM pipeline parallel over a Ray cluster.

Owns: rendering argv and environment per stage from the stages' layer counts: per stage for the
agent (``rpc_worker``, ``llama_head``, ``ray_head``, ``ray_worker``, ``vllm_serve``) and for a
whole pipeline at once (``llama_cpp_rpc``, ``vllm_ray``). Must not: start processes, coordinate
agents (``pipeline`` and the reconciler do, through the API), or know the planner (a stage here
is plain data).

- llama.cpp: every stage but the first runs ``rpc-server`` (its GPUs exposed over TCP); the
  first stage's node runs ``llama-server --rpc host:port,... --tensor-split ...`` with the GGUF
  file, the split proportional to each stage's layers. The split lists the local stage first,
  then the RPC servers in ``--rpc`` order: which order llama.cpp numbers local and RPC devices
  in differs between its releases (an assumption to check against the build that runs it).
- vLLM: the first stage's node is the Ray head (``ray start --head --block``), the others join
  it (``ray start --address --block``: in the foreground, so the agent supervises them); the
  head then runs ``vllm serve --pipeline-parallel-size N --tensor-parallel-size T
  --distributed-executor-backend ray`` with the stages' layer counts in
  ``VLLM_PP_LAYER_PARTITION``. Which Ray node takes which pipeline rank is Ray's and vLLM's
  choice (not pinned here); equal GPUs per stage are required (vLLM's tensor parallel degree is
  one number).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gridplace.executor.errors import DriverError

RPC_PORT = 50052  # rpc-server's default
RAY_PORT = 6379  # Ray's default head port


@dataclass(frozen=True)
class StageHost:
    node: str
    address: str  # where the other stages reach this node
    gpus: int
    layers: int


@dataclass(frozen=True)
class NodeCommand:
    node: str
    argv: tuple[str, ...]
    env: dict[str, str]


def _check(stages: list[StageHost]) -> None:
    if len(stages) < 2:
        raise DriverError(f"a pipeline needs at least 2 stages, got {len(stages)}")
    if any(s.layers < 1 for s in stages):
        raise DriverError("every stage of a pipeline holds at least one layer")
    if len({s.node for s in stages}) != len(stages):
        raise DriverError("a node holds at most one stage of a pipeline")


def rpc_worker(executable: str, host: str, port: int) -> tuple[str, ...]:
    """A later stage of llama.cpp RPC: its GPUs served over TCP at ``host:port``."""
    return (executable, "--host", host, "--port", str(port))


def llama_head(
    executable: str,
    gguf: str,
    host: str,
    port: int,
    alias: str,
    workers: list[str],
    layers: list[int],
) -> tuple[str, ...]:
    """The first stage of llama.cpp RPC: ``llama-server`` over its own GPUs and the ``workers``'
    ``host:port`` (stages 2..N in order), layers split as ``layers`` (every stage's, first to
    last)."""
    if len(workers) != len(layers) - 1:
        raise DriverError(f"{len(layers)} stages need {len(layers) - 1} RPC workers, got {workers}")
    argv = [executable, "-m", gguf, "--host", host, "--port", str(port)]
    argv += ["--n-gpu-layers", "999", "--rpc", ",".join(workers)]
    argv += ["--tensor-split", ",".join(str(n) for n in layers)]
    return (*argv, "--metrics", "--alias", alias)


def ray_head(executable: str, address: str, port: int) -> tuple[str, ...]:
    """The first stage's Ray head, in the foreground (``--block``) so the agent supervises it."""
    return (
        executable,
        "start",
        "--head",
        "--node-ip-address",
        address,
        "--port",
        str(port),
        "--block",
    )


def ray_worker(executable: str, head: str, address: str) -> tuple[str, ...]:
    """A later stage joining the Ray head at ``head`` (host:port), in the foreground."""
    return (executable, "start", "--address", head, "--node-ip-address", address, "--block")


def vllm_serve(
    executable: str, model: str, host: str, port: int, served_name: str, layers: list[int], tp: int
) -> NodeCommand:
    """``vllm serve`` on the Ray head's node over every stage (node name left to the caller)."""
    argv = [executable, "serve", model, "--host", host, "--port", str(port)]
    argv += ["--pipeline-parallel-size", str(len(layers)), "--tensor-parallel-size", str(tp)]
    argv += ["--distributed-executor-backend", "ray", "--served-model-name", served_name]
    partition = ",".join(str(n) for n in layers)
    return NodeCommand("", tuple(argv), {"VLLM_PP_LAYER_PARTITION": partition})


def llama_cpp_rpc(
    stages: list[StageHost], gguf: str, host: str, port: int, alias: str
) -> list[NodeCommand]:
    """``rpc-server`` on stages 2..N, ``llama-server --rpc`` on the first (see the module)."""
    _check(stages)
    first, rest = stages[0], stages[1:]
    commands = [
        NodeCommand(s.node, rpc_worker("rpc-server", s.address, RPC_PORT), {}) for s in rest
    ]
    workers = [f"{s.address}:{RPC_PORT}" for s in rest]
    layers = [s.layers for s in stages]
    server = llama_head("llama-server", gguf, host, port, alias, workers, layers)
    return [NodeCommand(first.node, server, {}), *commands]


def vllm_ray(
    stages: list[StageHost], model: str, host: str, port: int, served_name: str
) -> list[NodeCommand]:
    """``ray start`` on every stage's node, then ``vllm serve`` on the head (see the module)."""
    _check(stages)
    tp = same_gpus(s.gpus for s in stages)
    head = stages[0]
    commands = [NodeCommand(head.node, ray_head("ray", head.address, RAY_PORT), {})]
    head_address = f"{head.address}:{RAY_PORT}"
    commands += [
        NodeCommand(s.node, ray_worker("ray", head_address, s.address), {}) for s in stages[1:]
    ]
    serve = vllm_serve("vllm", model, host, port, served_name, [s.layers for s in stages], tp)
    commands.append(NodeCommand(head.node, serve.argv, serve.env))
    return commands


def same_gpus(gpus_per_stage: Iterable[int]) -> int:
    """vLLM's one tensor parallel degree: every stage must have as many GPUs."""
    tp = set(gpus_per_stage)
    if len(tp) != 1:
        raise DriverError(f"vLLM needs the same GPUs on every stage, got {sorted(tp)}")
    return tp.pop()
