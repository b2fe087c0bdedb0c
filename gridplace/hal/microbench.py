"""A short micro-benchmark of one GPU: device memory bandwidth and dense matmul throughput.

Owns: measuring, with torch (CUDA or ROCm builds) or else CuPy, whichever imports and sees a GPU.
Must not: run when neither is present (it raises ``BenchmarkUnavailable`` saying so), take more
than a few seconds per GPU, or allocate more than ~1.5 GiB.

  bandwidth  a device-to-device copy of a 1 GiB buffer (at most a quarter of free memory),
             counted as bytes read + bytes written per copy, best of ``repeats`` timed batches;
  matmul     8192 x 8192 x 8192 products in bf16 (fp16 where bf16 is missing), 2 n^3 FLOPs each,
             best of ``repeats`` timed batches, on normally distributed data (zeros run faster).
Achieved figures sit below the catalog's peaks: about 80-93 % for bandwidth and 60-85 % for
matmul on healthy datacenter parts. Much lower means a throttled, power-capped or shared card.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gridplace.hal.device import DeviceInfo
from gridplace.hal.errors import BenchmarkUnavailable
from gridplace.hal.match import Benchmark
from gridplace.specs import GPUModelSpec

COPY_BYTES = 1024**3
MATMUL_SIZE = 8192


@dataclass(frozen=True)
class BenchmarkReport:
    """Measured figures of one device and the catalog's, side by side."""

    device_index: int
    framework: str
    memory_bandwidth_gbps: float
    matmul_tflops: float
    matmul_dtype: str
    catalog_bandwidth_gbps: float | None = None
    catalog_tflops: float | None = None

    @property
    def benchmark(self) -> Benchmark:
        return Benchmark(self.memory_bandwidth_gbps, self.matmul_tflops)

    def lines(self) -> list[str]:
        """'memory bandwidth 2981 GB/s = 89% of catalog 3350 GB/s' and the matmul line."""
        return [
            _line(
                "memory bandwidth", self.memory_bandwidth_gbps, self.catalog_bandwidth_gbps, "GB/s"
            ),
            _line(f"{self.matmul_dtype} matmul", self.matmul_tflops, self.catalog_tflops, "TFLOPS"),
        ]


def _line(what: str, measured: float, catalogued: float | None, unit: str) -> str:
    if not catalogued:
        return f"{what} {measured:.0f} {unit} (no catalog figure)"
    return f"{what} {measured:.0f} {unit} = {measured / catalogued:.0%} of catalog {catalogued:g}"


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # missing, or a broken CUDA/ROCm install that fails on import
        return None


def available_framework() -> str | None:
    """'torch' or 'cupy' when one imports and sees a GPU, else None."""
    torch = _import("torch")
    if torch is not None and torch.cuda.is_available():
        return "torch"
    cupy = _import("cupy")
    if cupy is not None:
        try:
            if cupy.cuda.runtime.getDeviceCount() > 0:
                return "cupy"
        except Exception:
            return None
    return None


def run_microbenchmark(
    device: DeviceInfo,
    catalog_spec: GPUModelSpec | None = None,
    framework: str | None = None,
    repeats: int = 3,
) -> BenchmarkReport:
    """Measure ``device``; raises ``BenchmarkUnavailable`` when it cannot be done here."""
    framework = framework or available_framework()
    if framework is None:
        raise BenchmarkUnavailable(
            "cannot benchmark: neither torch nor cupy is importable with a visible GPU on this "
            "node (install PyTorch or CuPy to measure bandwidth and matmul throughput)"
        )
    runner: Callable[[DeviceInfo, int], tuple[float, float, str]] = (
        _torch_benchmark if framework == "torch" else _cupy_benchmark
    )
    try:
        bandwidth, tflops, dtype = runner(device, repeats)
    except BenchmarkUnavailable:
        raise
    except Exception as error:  # out of memory, a busy or lost device, a driver error
        raise BenchmarkUnavailable(
            f"{framework} benchmark of {device.label} failed: {error}"
        ) from error
    catalog_tflops = None
    if catalog_spec is not None:
        throughput = catalog_spec.tensor_tflops
        catalog_tflops = throughput.bf16 if dtype == "bf16" else throughput.fp16
    return BenchmarkReport(
        device_index=device.index,
        framework=framework,
        memory_bandwidth_gbps=round(bandwidth, 1),
        matmul_tflops=round(tflops, 1),
        matmul_dtype=dtype,
        catalog_bandwidth_gbps=catalog_spec.memory_bandwidth_gbps if catalog_spec else None,
        catalog_tflops=catalog_tflops,
    )


def _torch_index(torch: Any, device: DeviceInfo) -> int:
    """The torch device index of ``device``: torch orders GPUs fastest-first unless told
    otherwise, so the NVML index is only a fallback to matching by UUID."""
    wanted = (device.uuid or "").lower().removeprefix("gpu-")
    for index in range(torch.cuda.device_count()):
        uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "")).lower()
        if wanted and uuid.removeprefix("gpu-") == wanted:
            return index
    if device.index >= torch.cuda.device_count():
        raise BenchmarkUnavailable(f"torch does not see {device.label}")
    return device.index


def _best_time_s(
    synchronize: Callable[[], None],
    timer: Callable[[Callable[[], None], int], float],
    work: Callable[[], None],
    iterations: int,
    repeats: int,
) -> float:
    """Seconds per ``work`` call: one warm-up (kernels loaded, clocks up), then the best of
    ``repeats`` batches of ``iterations`` calls."""
    work()
    synchronize()
    return min(timer(work, iterations) for _ in range(repeats))


def _torch_benchmark(device: DeviceInfo, repeats: int) -> tuple[float, float, str]:
    torch = importlib.import_module("torch")
    index = _torch_index(torch, device)
    gpu = torch.device("cuda", index)

    def timer(work: Callable[[], None], iterations: int) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iterations):
            work()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1000 / iterations

    def synchronize() -> None:
        torch.cuda.synchronize(gpu)

    def copy_gbps() -> float:  # buffers are freed when it returns
        free_bytes, _ = torch.cuda.mem_get_info(index)
        source = torch.empty(min(COPY_BYTES, free_bytes // 4) // 2, dtype=torch.float16, device=gpu)
        target = torch.empty_like(source)
        seconds = _best_time_s(synchronize, timer, lambda: target.copy_(source), 20, repeats)
        return float(2 * source.numel() * source.element_size() / seconds / 1e9)

    def matmul_tflops(dtype: Any) -> float:
        a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=gpu, dtype=dtype)
        b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=gpu, dtype=dtype)
        seconds = _best_time_s(synchronize, timer, lambda: torch.matmul(a, b), 10, repeats)
        return 2 * MATMUL_SIZE**3 / seconds / 1e12

    bandwidth = copy_gbps()
    bf16 = bool(torch.cuda.is_bf16_supported())
    tflops = matmul_tflops(torch.bfloat16 if bf16 else torch.float16)
    torch.cuda.empty_cache()
    return bandwidth, tflops, "bf16" if bf16 else "fp16"


def _cupy_benchmark(device: DeviceInfo, repeats: int) -> tuple[float, float, str]:
    cupy = importlib.import_module("cupy")

    def timer(work: Callable[[], None], iterations: int) -> float:
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(iterations):
            work()
        end.record()
        end.synchronize()
        return float(cupy.cuda.get_elapsed_time(start, end)) / 1000 / iterations

    def synchronize() -> None:
        cupy.cuda.Device().synchronize()

    def copy_gbps() -> float:
        free_bytes, _ = cupy.cuda.runtime.memGetInfo()
        source = cupy.empty(min(COPY_BYTES, free_bytes // 4) // 2, dtype=cupy.float16)
        target = cupy.empty_like(source)
        seconds = _best_time_s(
            synchronize, timer, lambda: target.__setitem__(Ellipsis, source), 20, repeats
        )
        return float(2 * source.nbytes / seconds / 1e9)

    def matmul_tflops() -> float:
        # CuPy has no bfloat16: fp16 inputs, fp32 accumulation in cuBLAS.
        a = cupy.random.standard_normal((MATMUL_SIZE, MATMUL_SIZE), dtype=cupy.float32)
        a = a.astype(cupy.float16)
        b = a.copy()
        seconds = _best_time_s(synchronize, timer, lambda: cupy.matmul(a, b), 10, repeats)
        return 2 * MATMUL_SIZE**3 / seconds / 1e12

    with cupy.cuda.Device(device.index):
        bandwidth = copy_gbps()
        tflops = matmul_tflops()
        cupy.get_default_memory_pool().free_all_blocks()
    return bandwidth, tflops, "fp16"
