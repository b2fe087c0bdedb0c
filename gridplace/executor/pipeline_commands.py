"""Command lines of a pipeline replica (stages on several nodes), per node, for the two real ways
of running one: llama.cpp RPC and vLLM pipeline parallel over a Ray cluster.

Owns: rendering argv and environment per stage from the stages' layer counts. Must not: start
processes, coordinate agents (the first stage waits for the others' readiness through the API:
not built yet), or know the planner (a stage here is plain data).

- llama.cpp: every stage but the first runs ``rpc-server`` (its GPUs exposed over TCP); the
  first stage's node runs ``llama-server --rpc host:port,... --tensor-split ...`` with the GGUF
  file, the split proportional to each stage's layers. The split lists the local stage first,
  then the RPC servers in ``--rpc`` order: which order llama.cpp numbers local and RPC devices
  in differs between its releases (an assumption to check against the build that runs it).
- vLLM: the first stage's node is the Ray head (``ray start --head``), the others join it
  (``ray start --address``); the head then runs ``vllm serve --pipeline-parallel-size N
  --tensor-parallel-size T --distributed-executor-backend ray`` with the stages' layer counts in
  ``VLLM_PP_LAYER_PARTITION``. Which Ray node takes which pipeline rank is Ray's and vLLM's
  choice (not pinned here); equal GPUs per stage are required (vLLM's tensor parallel degree is
  one number).
"""

from __future__ import annotations

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


def llama_cpp_rpc(
    stages: list[StageHost], gguf: str, host: str, port: int, alias: str
) -> list[NodeCommand]:
    """``rpc-server`` on stages 2..N, ``llama-server --rpc`` on the first (see the module)."""
    _check(stages)
    first, rest = stages[0], stages[1:]
    commands = [
        NodeCommand(s.node, ("rpc-server", "--host", s.address, "--port", str(RPC_PORT)), {})
        for s in rest
    ]
    rpc = ",".join(f"{s.address}:{RPC_PORT}" for s in rest)
    split = ",".join(str(s.layers) for s in stages)
    argv = ["llama-server", "-m", gguf, "--host", host, "--port", str(port)]
    argv += ["--n-gpu-layers", "999", "--rpc", rpc, "--tensor-split", split]
    argv += ["--metrics", "--alias", alias]
    return [NodeCommand(first.node, tuple(argv), {}), *commands]


def vllm_ray(
    stages: list[StageHost], model: str, host: str, port: int, served_name: str
) -> list[NodeCommand]:
    """``ray start`` on every stage's node, then ``vllm serve`` on the head (see the module)."""
    _check(stages)
    tp = {s.gpus for s in stages}
    if len(tp) != 1:
        raise DriverError(f"vLLM needs the same GPUs on every stage, got {sorted(tp)}")
    head = stages[0]
    start_head = ("ray", "start", "--head", "--node-ip-address", head.address)
    commands = [NodeCommand(head.node, (*start_head, "--port", str(RAY_PORT)), {})]
    commands += [
        NodeCommand(
            s.node,
            (
                "ray",
                "start",
                "--address",
                f"{head.address}:{RAY_PORT}",
                "--node-ip-address",
                s.address,
            ),
            {},
        )
        for s in stages[1:]
    ]
    argv = ["vllm", "serve", model, "--host", host, "--port", str(port)]
    argv += ["--pipeline-parallel-size", str(len(stages)), "--tensor-parallel-size", str(tp.pop())]
    argv += ["--distributed-executor-backend", "ray", "--served-model-name", served_name]
    partition = ",".join(str(s.layers) for s in stages)
    commands.append(NodeCommand(head.node, tuple(argv), {"VLLM_PP_LAYER_PARTITION": partition}))
    return commands
