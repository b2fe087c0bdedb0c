"""What a ``Predictor``'s arguments resolve to: their checks, the engine generation, the bits per
weight, and llama.cpp's settings and peak figures.

Owns: turning the query's flags, options and names into the values the rooflines take.
Must not: time anything (the rooflines do) or read files.
"""

from __future__ import annotations

import dataclasses

from gridplace.planner.perfmodel.compute_units import compute_units
from gridplace.planner.perfmodel.engines import head_bits, weight_bits
from gridplace.planner.perfmodel.errors import InvalidQuery
from gridplace.planner.perfmodel.generations import GENERATIONS, EngineGeneration
from gridplace.planner.perfmodel.llamacpp import (
    LlamaCppHardware,
    LlamaCppSettings,
    resolve_settings,
)
from gridplace.planner.perfmodel.roofline import Hardware
from gridplace.planner.perfmodel.support import sixteen_bit_tflops
from gridplace.specs.common import Engine, EngineOptions, KvCacheType, Precision
from gridplace.specs.gpu import GPUModelSpec

KV_BYTES_16BIT = 2.0
KV_BYTES_FP8 = 1.0


def kv_bytes_per_element(kv_type: KvCacheType | None, fp8: bool) -> float:
    """Bytes per K/V element: the cache type set in the options, else the older fp8 flag."""
    if kv_type is not None:
        return kv_type.bytes_per_element
    return KV_BYTES_FP8 if fp8 else KV_BYTES_16BIT


def check_arguments(tp: int, derate: float, host_time_factor: float) -> None:
    if tp < 1:
        raise InvalidQuery("tp", tp, "tensor parallel degree must be >= 1")
    if not 0.0 <= derate <= 1.0:
        raise InvalidQuery("derate", derate, "throttle ratio must be within 0..1")
    if not 0.1 <= host_time_factor <= 10.0:
        raise InvalidQuery("host_time_factor", host_time_factor, "must be within 0.1..10")


def checkpoint_bits(
    precision: Precision, engine: Engine, per_parameter: float | None
) -> tuple[float, float]:
    """Bits per weight and per embedding/head weight. A known checkpoint (e.g. a GGUF file:
    size x 8 / parameters) replaces the format's typical figures for every weight."""
    if per_parameter is None:
        return weight_bits(precision, engine), head_bits(precision, engine)
    if not 1.0 <= per_parameter <= 32.0:
        raise InvalidQuery("weight_bits_per_parameter", per_parameter, "must be within 1..32")
    return per_parameter, per_parameter


def llama_cpp_settings(
    generation: EngineGeneration | None,
    options: EngineOptions | None,
    gpu: GPUModelSpec,
    eager: bool,
    kv_type: KvCacheType | None,
    kv_cache_fp8: bool,
) -> LlamaCppSettings:
    """llama.cpp's settings for this query (``eager`` and ``kv_cache_fp8`` are the older flags)."""
    release = generation.options if generation is not None else None
    settings = resolve_settings(release, options, gpu.vendor)
    if eager:
        settings = dataclasses.replace(settings, cuda_graphs=False)
    if kv_type is None and kv_cache_fp8:  # llama.cpp has no fp8 cache: its 8-bit one
        settings = dataclasses.replace(settings, kv_cache_type=KvCacheType.Q8_0)
    return settings


def llama_cpp_hardware(
    gpu: GPUModelSpec, gpu_id: str | None, hardware: Hardware, compute_factor: float
) -> LlamaCppHardware:
    """The peak figures llama.cpp's kernels see (cuBLAS at the FP16-accumulate rate)."""
    cublas = gpu.tensor_tflops.fp16_half_accumulate or sixteen_bit_tflops(gpu)
    return LlamaCppHardware(
        bandwidth_gbyte_per_s=hardware.bandwidth_gbyte_per_s,
        fp16_tflops=cublas * compute_factor,
        attention_tflops=hardware.attention_tflops,
        compute_units=compute_units(gpu, gpu_id),
    )


def engine_generation(
    generation: EngineGeneration | str | None, engine: Engine
) -> EngineGeneration | None:
    """The generation record for a name or record; InvalidQuery if unknown or of another engine."""
    if generation is None:
        return None
    if isinstance(generation, str):
        found = GENERATIONS.get(generation)
        if found is None:
            known = ", ".join(sorted(GENERATIONS))
            raise InvalidQuery("generation", generation, f"unknown; known generations: {known}")
        generation = found
    if generation.engine is not engine:
        raise InvalidQuery(
            "generation",
            generation.name,
            f"is a generation of {generation.engine.value}, not of {engine.value}",
        )
    return generation
