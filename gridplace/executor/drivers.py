"""Runtime drivers: an assignment -> the command line, environment and probes of a server.

Owns: the ``vllm``, ``llama.cpp`` and ``command`` templates, GPU selection through
``CUDA_VISIBLE_DEVICES`` / ``HIP_VISIBLE_DEVICES``, and which HTTP paths say "healthy" and
"requests in flight". Must not: start processes (``process`` does) or fetch weights.

GPU numbering: an assignment's GPU indices count the node's GPUs in the order of its inventory
(healthy devices, HAL order). ``Target.gpu_ids`` maps each to what the vendor runtime accepts (a
UUID when the HAL read one, else the index with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA counts
like NVML does).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.errors import DriverError
from gridplace.executor.manifest import DriverKind

# vLLM's memory budget for a whole GPU; a replica with gpuShare s gets 1/s of it.
GPU_MEMORY_UTILIZATION_WHOLE = 0.9
# In-flight request gauges: vLLM's names (the stub server uses them too) and llama.cpp's.
VLLM_INFLIGHT = ("vllm:num_requests_running", "vllm:num_requests_waiting")
LLAMA_CPP_INFLIGHT = ("llamacpp:requests_processing", "llamacpp:requests_deferred")
# Health probes that are not HTTP paths (``process.ProcessRuntime.healthy``): a pipeline's stage
# processes speak no HTTP.
PROBE_TCP = "tcp:"  # the port accepts a connection (rpc-server, the Ray head)
PROBE_ALIVE = "alive:"  # running is all there is to see (a Ray worker has no port of its own)


@dataclass(frozen=True)
class Target:
    """Everything a driver needs about one replica to start."""

    spec: ReplicaSpec
    replica_id: str
    model: str  # what the engine is told to serve (a repo id or a path)
    host: str  # address the server listens on
    port: int
    gpu_ids: dict[int, str]  # assignment GPU index -> the runtime's device id
    vendor: str = "nvidia"  # nvidia | amd (from the HAL)
    weights_path: Path | None = None  # a cached local file, when the manifest names one
    quantization: str | None = None

    @property
    def visible_devices(self) -> str:
        try:
            return ",".join(self.gpu_ids[g] for g in self.spec.gpus)
        except KeyError as error:
            raise DriverError(
                f"{self.spec.key}: GPU {error.args[0]} is not on this node "
                f"(it has {len(self.gpu_ids)})"
            ) from None

    @property
    def gpu_memory_utilization(self) -> float:
        return round(GPU_MEMORY_UTILIZATION_WHOLE / self.spec.gpu_share, 3)


@dataclass(frozen=True)
class LaunchSpec:
    """A server to run: argv, environment additions, and how to probe it."""

    argv: tuple[str, ...]
    env: dict[str, str]
    health_paths: tuple[str, ...]  # any 200 among them means healthy
    inflight_metrics: tuple[str, ...]  # Prometheus gauges summed on /metrics
    drain_path: str | None = None  # POSTed to stop taking new requests, when the server has one
    endpoint: str = ""

    def __post_init__(self) -> None:
        if not self.argv:
            raise DriverError("empty command line")


class Driver(Protocol):
    @property
    def kind(self) -> DriverKind: ...

    def launch_spec(self, target: Target) -> LaunchSpec: ...


def gpu_environment(target: Target) -> dict[str, str]:
    devices = target.visible_devices
    if target.vendor == "amd":
        return {"HIP_VISIBLE_DEVICES": devices, "ROCR_VISIBLE_DEVICES": devices}
    return {"CUDA_VISIBLE_DEVICES": devices, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@dataclass(frozen=True)
class VllmDriver:
    """``vllm serve MODEL``: precision -> ``--dtype`` (bf16/fp16) or ``--quantization fp8``
    (online FP8 from a 16-bit checkpoint); int8/int4 need a pre-quantized checkpoint whose method
    vLLM reads from its config, unless the manifest names one (``quantization``)."""

    executable: str = "vllm"
    kind: DriverKind = DriverKind.VLLM
    ray_executable: str = "ray"  # a pipeline's stages (``pipeline``)

    def launch_spec(self, target: Target) -> LaunchSpec:
        model = str(target.weights_path) if target.weights_path else target.model
        argv = [self.executable, "serve", model, "--host", target.host, "--port", str(target.port)]
        argv += ["--tensor-parallel-size", str(target.spec.tensor_parallel)]
        argv += ["--gpu-memory-utilization", f"{target.gpu_memory_utilization:g}"]
        argv += ["--served-model-name", target.spec.workload]
        precision = target.spec.precision
        if target.quantization:
            argv += ["--quantization", target.quantization]
        elif precision == "fp8":
            argv += ["--quantization", "fp8"]
        if precision in ("bf16", "fp16"):
            argv += ["--dtype", "bfloat16" if precision == "bf16" else "float16"]
        return LaunchSpec(
            argv=tuple(argv),
            env=gpu_environment(target),
            health_paths=("/health", "/v1/models"),
            inflight_metrics=VLLM_INFLIGHT,
            endpoint=f"{target.host}:{target.port}",
        )


@dataclass(frozen=True)
class LlamaCppDriver:
    """``llama-server -m FILE.gguf``: the GGUF file (its quantization *is* the precision) must come
    from the cache, so the manifest must name weights for the workload."""

    executable: str = "llama-server"
    kind: DriverKind = DriverKind.LLAMA_CPP
    rpc_executable: str = "rpc-server"  # a pipeline's later stages (``pipeline``)

    def launch_spec(self, target: Target) -> LaunchSpec:
        if target.weights_path is None:
            raise DriverError(
                f"llama.cpp needs a GGUF file for workload {target.spec.workload!r} "
                f"({target.spec.precision}): add 'weights' to its model-manifest entry"
            )
        argv = [self.executable, "-m", str(target.weights_path)]
        argv += ["--host", target.host, "--port", str(target.port)]
        argv += ["--n-gpu-layers", "999", "--metrics", "--alias", target.spec.workload]
        if target.spec.tensor_parallel > 1:
            argv += ["--split-mode", "layer"]  # llama.cpp spreads layers over the visible GPUs
        return LaunchSpec(
            argv=tuple(argv),
            env=gpu_environment(target),
            health_paths=("/health",),
            inflight_metrics=LLAMA_CPP_INFLIGHT,
            endpoint=f"{target.host}:{target.port}",
        )


PLACEHOLDERS = (
    "workload",
    "model",
    "host",
    "port",
    "gpus",
    "precision",
    "tensor_parallel",
    "gpu_share",
    "gpu_memory_utilization",
    "weights",
    "replica_id",
)


@dataclass(frozen=True)
class CommandDriver:
    """A command template, split like a shell would (``shlex``) and then each word formatted
    with the placeholders ``{workload} {model} {host} {port} {gpus} {precision}
    {tensor_parallel} {gpu_share} {gpu_memory_utilization} {weights} {replica_id}`` — so a
    value with spaces stays one argument and nothing is interpreted by a shell."""

    template: str
    health_paths: tuple[str, ...] = ("/health", "/v1/models")
    inflight_metrics: tuple[str, ...] = VLLM_INFLIGHT
    drain_path: str | None = None
    kind: DriverKind = DriverKind.COMMAND
    words: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        try:
            words = tuple(shlex.split(self.template))
        except ValueError as error:
            raise DriverError(f"command template: {error}") from error
        if not words:
            raise DriverError("the command template is empty")
        for word in words:
            try:
                word.format(**{name: "" for name in PLACEHOLDERS})
            except (KeyError, IndexError, ValueError) as error:
                raise DriverError(
                    f"command template word {word!r}: unknown placeholder {error}; "
                    f"known: {', '.join(PLACEHOLDERS)}"
                ) from error
        object.__setattr__(self, "words", words)

    def launch_spec(self, target: Target) -> LaunchSpec:
        values = {
            "workload": target.spec.workload,
            "model": target.model,
            "host": target.host,
            "port": str(target.port),
            "gpus": target.visible_devices,
            "precision": target.spec.precision,
            "tensor_parallel": str(target.spec.tensor_parallel),
            "gpu_share": str(target.spec.gpu_share),
            "gpu_memory_utilization": f"{target.gpu_memory_utilization:g}",
            "weights": str(target.weights_path or ""),
            "replica_id": target.replica_id,
        }
        return LaunchSpec(
            argv=tuple(word.format(**values) for word in self.words),
            env=gpu_environment(target),
            health_paths=self.health_paths,
            inflight_metrics=self.inflight_metrics,
            drain_path=self.drain_path,
            endpoint=f"{target.host}:{target.port}",
        )
