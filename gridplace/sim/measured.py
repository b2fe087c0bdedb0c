"""Measured step times the simulator's truth is built from, and how far the model misses them.

Owns: a small table of measured operating points (derived from public measurements by
``bench/truth_points.py``, which names each source: Splitwise ISCA'24 Llama-2-70B on DGX-A100 /
DGX-H100, TensorRT-LLM v0.5 first-token latency, llama.cpp llama-bench figures from
ggml-org/llama.cpp#4766 and #4812; medians of repeats), their ratio to the performance model at
the same point, interpolated over batch and tokens, and the spread of the model's misses.
Must not: be read by the planner (the judge's evidence is not the defendant's).

Ratio: measured / model, the model configured as the stack that measured it (Splitwise's rows
ran on the ``vllm-2023`` engine generation, llama.cpp's on known weight bits), so that a ratio is
the model's miss and not an engine version's difference. Between points a ratio is interpolated
by inverse squared distance in (log2 batch, log2 tokens); at a point it is the point's.

Spread (``miss_sigma``): per configuration (GPU, model, precision, engine, TP) and phase, the
mean log ratio is the model's systematic miss there; the spread of a phase is the root mean
square of those misses over configurations. Computed from the table at first use, so it follows
the performance model as it is refitted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

from gridplace.planner.perfmodel import Predictor
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Precision

Phase = Literal["decode", "prefill"]
PHASES: tuple[Phase, Phase] = ("decode", "prefill")
NEAREST_TOKENS = 1e-9  # a query exactly on a point takes the point's ratio


@dataclass(frozen=True)
class MeasuredPoint:
    """One measured step: ``measured_ms`` for ``batch`` sequences at ``tokens`` (prompt tokens
    of a prefill; context tokens of a decode step)."""

    config: ConfigKey
    phase: Phase
    batch: int
    tokens: int
    measured_ms: float
    generation: str | None  # the engine generation that measured it (None: today's)
    weight_bits: float | None  # a known checkpoint's bits per weight


ConfigKey = tuple[str, str, str, str, int]  # (GPU id, model id, precision, engine, TP)


@dataclass(frozen=True)
class MeasuredSeries:
    """One source's measurements of one configuration and phase: (batch, tokens, ms) each."""

    source: str
    gpu: str
    model: str
    precision: str
    engine: str
    tp: int
    phase: Phase
    generation: str | None
    weight_bits: float | None
    figures: tuple[tuple[int, int, float], ...]

    def points(self) -> list[MeasuredPoint]:
        config = (self.gpu, self.model, self.precision, self.engine, self.tp)
        return [
            MeasuredPoint(config, self.phase, b, t, ms, self.generation, self.weight_bits)
            for b, t, ms in self.figures
        ]


# fmt: off
MEASURED_SERIES: tuple[MeasuredSeries, ...] = (  # bench/truth_points.py prints it
    MeasuredSeries("splitwise", "a100-sxm-80gb", "llama-2-70b", "fp16", "vllm", 2,
        "prefill", "vllm-2023", None,
        ((1, 1024, 377.1), (1, 128, 81.08), (1, 2048, 688.1), (1, 256, 112.9), (1, 4096,
         1485), (1, 512, 195.5), (16, 512, 3239), (2, 512, 416.5), (32, 512, 6633), (4, 512,
         845.4), (8, 512, 1597), (1, 8192, 2990),)),
    MeasuredSeries("splitwise", "a100-sxm-80gb", "llama-2-70b", "fp16", "vllm", 4,
        "prefill", "vllm-2023", None,
        ((1, 1024, 227.1), (1, 128, 63.65), (1, 2048, 403.3), (1, 256, 78.57), (1, 4096,
         965.2), (1, 512, 127), (16, 512, 2893), (2, 512, 253.9), (32, 512, 5132), (4, 512,
         571.4), (64, 512, 1.095e+04), (8, 512, 1233), (1, 8192, 2278),)),
    MeasuredSeries("splitwise", "a100-sxm-80gb", "llama-2-70b", "fp16", "vllm", 8,
        "prefill", "vllm-2023", None,
        ((1, 1024, 154.5), (1, 128, 65.35), (1, 2048, 274.2), (1, 256, 66.76), (1, 4096,
         661.2), (1, 512, 93.02), (16, 512, 2084), (2, 512, 165.9), (32, 512, 3525), (4,
         512, 292.3), (64, 512, 7554), (8, 512, 767.6), (1, 8192, 1550),)),
    MeasuredSeries("splitwise", "h100-sxm", "llama-2-70b", "fp16", "vllm", 2,
        "prefill", "vllm-2023", None,
        ((1, 1024, 158), (1, 128, 48.33), (1, 2048, 310.3), (1, 256, 51.85), (1, 4096,
         642.7), (1, 512, 83.83), (16, 512, 1192), (2, 512, 155.8), (32, 512, 2398), (4,
         512, 299.8), (8, 512, 606), (1, 8192, 1340),)),
    MeasuredSeries("splitwise", "h100-sxm", "llama-2-70b", "fp16", "vllm", 4,
        "prefill", "vllm-2023", None,
        ((1, 1024, 105.6), (1, 128, 49.09), (1, 2048, 200.7), (1, 256, 50.98), (1, 4096,
         463.5), (1, 512, 59.72), (16, 512, 874.3), (2, 512, 103.6), (32, 512, 1726), (4,
         512, 195.3), (64, 512, 3520), (8, 512, 442.2), (1, 8192, 953.6),)),
    MeasuredSeries("splitwise", "h100-sxm", "llama-2-70b", "fp16", "vllm", 8,
        "prefill", "vllm-2023", None,
        ((1, 1024, 77.91), (1, 128, 58.19), (1, 2048, 136.8), (1, 256, 51.66), (1, 4096,
         390.3), (1, 512, 53.86), (16, 512, 811.9), (2, 512, 76.89), (32, 512, 1552), (4,
         512, 132.6), (64, 512, 2936), (8, 512, 371.6), (1, 8192, 844.9),)),
    MeasuredSeries("splitwise", "a100-sxm-80gb", "llama-2-70b", "fp16", "vllm", 2,
        "decode", "vllm-2023", None,
        ((1, 1088, 54.77), (1, 192, 53.68), (1, 2112, 54.89), (1, 320, 54.1), (1, 4160,
         55.87), (1, 1024, 59.7), (1, 576, 54.86), (1, 1536, 60.35), (1, 640, 60.02), (1,
         2560, 60.27), (1, 768, 59.95), (1, 4608, 60.21), (16, 576, 65.46), (2, 576, 59.92),
         (32, 576, 72.19), (4, 576, 60.52), (64, 576, 67.24), (8, 576, 61.69), (1, 8256,
         57.32),)),
    MeasuredSeries("splitwise", "a100-sxm-80gb", "llama-2-70b", "fp16", "vllm", 4,
        "decode", "vllm-2023", None,
        ((1, 1088, 44.95), (1, 192, 42.42), (1, 2112, 44.98), (1, 320, 42.18), (1, 4160,
         46.37), (1, 1024, 44.37), (1, 576, 44.99), (1, 1536, 44.5), (1, 640, 44.51), (1,
         2560, 43.34), (1, 768, 44.48), (1, 4608, 44.78), (16, 576, 48.52), (2, 576, 45),
         (32, 576, 52.35), (4, 576, 45.09), (64, 576, 72.95), (8, 576, 45.8), (1, 8256,
         46.06),)),
    MeasuredSeries("splitwise", "a100-sxm-80gb", "llama-2-70b", "fp16", "vllm", 8,
        "decode", "vllm-2023", None,
        ((1, 1088, 44.97), (1, 192, 43.03), (1, 2112, 45.44), (1, 320, 43.48), (1, 4160,
         46.48), (1, 1024, 44.76), (1, 576, 44.85), (1, 1536, 45.35), (1, 640, 45.9), (1,
         2560, 45.98), (1, 768, 44.99), (1, 4608, 45.03), (16, 576, 50.44), (2, 576, 44.56),
         (32, 576, 53.02), (4, 576, 45.79), (64, 576, 71.61), (8, 576, 46.47), (1, 8256,
         46.51),)),
    MeasuredSeries("splitwise", "h100-sxm", "llama-2-70b", "fp16", "vllm", 2,
        "decode", "vllm-2023", None,
        ((1, 1088, 37.39), (1, 192, 37.24), (1, 2112, 37.37), (1, 320, 37.84), (1, 4160,
         37.54), (1, 1024, 37.07), (1, 576, 37), (1, 1536, 36.88), (1, 640, 37.23), (1,
         2560, 37.29), (1, 768, 37.35), (1, 4608, 37.46), (16, 576, 41.97), (2, 576, 37.39),
         (32, 576, 52.3), (4, 576, 39.98), (64, 576, 42.3), (8, 576, 40.4), (1, 8256, 37.8),)),
    MeasuredSeries("splitwise", "h100-sxm", "llama-2-70b", "fp16", "vllm", 4,
        "decode", "vllm-2023", None,
        ((1, 1088, 29.44), (1, 192, 28.36), (1, 2112, 29.82), (1, 320, 30.03), (1, 4160,
         29.58), (1, 1024, 29.33), (1, 576, 29.72), (1, 1536, 29.33), (1, 640, 28.4), (1,
         2560, 29.77), (1, 768, 29.32), (1, 4608, 29.38), (16, 576, 32.84), (2, 576, 29.98),
         (32, 576, 36.88), (4, 576, 29.92), (64, 576, 52.36), (8, 576, 31.44), (1, 8256,
         29.72),)),
    MeasuredSeries("splitwise", "h100-sxm", "llama-2-70b", "fp16", "vllm", 8,
        "decode", "vllm-2023", None,
        ((1, 1088, 29.74), (1, 192, 29.87), (1, 2112, 31.05), (1, 320, 28.27), (1, 4160,
         30.56), (1, 1024, 31.86), (1, 576, 29.76), (1, 1536, 30.76), (1, 640, 31.51), (1,
         2560, 30.56), (1, 768, 30.66), (1, 4608, 30.81), (16, 576, 34.17), (2, 576, 30.26),
         (32, 576, 38.62), (4, 576, 31.79), (64, 576, 50.16), (8, 576, 32.5), (1, 8256,
         31.41),)),
    MeasuredSeries("trt-ttft", "h100-sxm", "llama-2-7b", "fp8", "tensorrt-llm", 1,
        "prefill", None, None,
        ((1, 128, 7), (1, 2048, 36),)),
    MeasuredSeries("trt-ttft", "h100-sxm", "llama-2-70b", "fp8", "tensorrt-llm", 4,
        "prefill", None, None,
        ((1, 128, 26), (1, 2048, 109),)),
    MeasuredSeries("trt-ttft", "l40s", "llama-2-7b", "fp8", "tensorrt-llm", 1,
        "prefill", None, None,
        ((1, 128, 14), (1, 2048, 73),)),
    MeasuredSeries("trt-ttft", "a100-sxm-80gb", "llama-2-7b", "fp16", "tensorrt-llm", 1,
        "prefill", None, None,
        ((1, 128, 16), (1, 2048, 133),)),
    MeasuredSeries("trt-ttft", "a100-sxm-80gb", "llama-2-70b", "fp16", "tensorrt-llm", 4,
        "prefill", None, None,
        ((1, 128, 47), (1, 2048, 377),)),
    MeasuredSeries("llama.cpp#4766", "rtx-4090", "llama-2-7b", "fp16", "llama.cpp", 1,
        "prefill", None, 15.995,
        ((1, 512, 46.34),)),
    MeasuredSeries("llama.cpp#4766", "rtx-4090", "llama-2-7b", "fp16", "llama.cpp", 1,
        "decode", None, 15.995,
        ((1, 64, 16.39),)),
    MeasuredSeries("llama.cpp#4766", "rtx-4090", "llama-2-7b", "int8", "llama.cpp", 1,
        "prefill", None, 8.501,
        ((1, 512, 66.81),)),
    MeasuredSeries("llama.cpp#4766", "rtx-4090", "llama-2-7b", "int8", "llama.cpp", 1,
        "decode", None, 8.501,
        ((1, 64, 10.19),)),
    MeasuredSeries("llama.cpp#4766", "rtx-4090", "llama-2-7b", "int4", "llama.cpp", 1,
        "prefill", None, 4.537,
        ((1, 512, 64.16),)),
    MeasuredSeries("llama.cpp#4812", "rtx-3090-ti", "llama-2-7b", "int4", "llama.cpp", 1,
        "prefill", None, 4.537,
        ((1, 512, 126.9),)),
    MeasuredSeries("llama.cpp#4812", "rtx-3090-ti", "llama-2-7b", "int4", "llama.cpp", 1,
        "decode", None, 4.537,
        ((1, 64, 7.847),)),
)
# fmt: on


@cache
def _predictor(config: ConfigKey, generation: str | None, bits: float | None) -> Predictor:
    gpu, model, precision, engine, tp = config
    catalog = builtin_catalog()
    return Predictor(
        catalog.models[model], catalog.gpus[gpu], Precision(precision), Engine(engine), tp,
        generation=generation, weight_bits_per_parameter=bits, model_id=model, gpu_id=gpu,
    )  # fmt: skip


def model_ms(point: MeasuredPoint) -> float:
    """The performance model's figure for the point's step."""
    predictor = _predictor(point.config, point.generation, point.weight_bits)
    if point.phase == "prefill":
        return predictor.prefill_ms(point.batch, point.tokens)
    return predictor.decode_ms(point.batch, point.tokens)


@dataclass(frozen=True)
class RatioField:
    """measured / model over (batch, tokens) for one configuration and phase."""

    points: tuple[tuple[float, float, float], ...]  # (log2 batch, log2 tokens, log ratio)

    def at(self, batch: int, tokens: int) -> float:
        x, y = math.log2(max(batch, 1)), math.log2(max(tokens, 1))
        weights = total = 0.0
        for px, py, log_ratio in self.points:
            distance = (px - x) ** 2 + (py - y) ** 2
            if distance < NEAREST_TOKENS:
                return math.exp(log_ratio)
            weight = 1.0 / distance
            weights += weight
            total += weight * log_ratio
        return math.exp(total / weights)

    @property
    def mean_log_ratio(self) -> float:
        return sum(p[2] for p in self.points) / len(self.points)


@cache
def ratio_fields() -> Mapping[tuple[ConfigKey, Phase], RatioField]:
    """Every measured configuration and phase with its ratio field."""
    grouped: dict[tuple[ConfigKey, Phase], list[tuple[float, float, float]]] = defaultdict(list)
    for point in (p for series in MEASURED_SERIES for p in series.points()):
        ratio = point.measured_ms / model_ms(point)
        grouped[(point.config, point.phase)].append(
            (math.log2(point.batch), math.log2(point.tokens), math.log(ratio))
        )
    return {key: RatioField(tuple(values)) for key, values in grouped.items()}


def ratio_field(config: ConfigKey, phase: Phase) -> RatioField | None:
    return ratio_fields().get((config, phase))


@cache
def miss_sigma() -> Mapping[Phase, float]:
    """Root mean square over configurations of the model's mean log miss, per phase."""
    misses: dict[Phase, list[float]] = defaultdict(list)
    for (_, phase), found in ratio_fields().items():
        misses[phase].append(found.mean_log_ratio)
    return {
        phase: math.sqrt(sum(m * m for m in misses[phase]) / len(misses[phase])) for phase in PHASES
    }
