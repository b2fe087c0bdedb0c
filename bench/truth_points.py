#!/usr/bin/env python3
"""Derive the simulator's table of measured step times (``gridplace/sim/measured.py``) from
../shared/data, and print it as the Python literal that module holds.

The unit tests run without ../shared, so the simulator carries the derived figures (medians of
repeats, one row per operating point), never the files. Sources (their loaders are
``bench/perfmodel_accuracy.py``'s, which documents each):
- Splitwise (ISCA'24) ``splitwise/data/perf_model.csv``: Llama-2-70B FP16 on DGX-A100 / DGX-H100
  at TP 2-8, prompt_time (prefill of batch x prompt) and token_time (decode step at context
  prompt + token_size/2); the ``vllm-2023`` engine generation; the "headline" rows only (not the
  power-capped H100, not the rows faster than peak FLOPS).
- TensorRT-LLM v0.5 first-token latency at batch 1 (``validation/``), catalog models only.
- llama.cpp llama-bench pp512 / tg128 from ggml-org/llama.cpp#4766 and #4812 (RTX 4090,
  RTX 3090 Ti; weights' bits from the file sizes).

Not used here: Vidur's operator timings (per-layer MLP and projections without the attention
kernel, not a whole step) and Helix's per-layer profiles (pipeline stages, not engine steps).

Reproduce::

    .venv/bin/python bench/truth_points.py --data ../shared/data > /tmp/points.py
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from perfmodel_accuracy import (  # noqa: E402
    Case,
    llama_cpp_cases,
    splitwise_cases,
    trtllm_cases,
)

from gridplace.specs import builtin_catalog  # noqa: E402


def points(data: Path) -> list[Case]:
    catalog = builtin_catalog()
    cases = [
        *splitwise_cases(data / "splitwise"),
        *(c for c in trtllm_cases(data / "validation") if c.source == "trt-ttft"),
        *llama_cpp_cases(),
    ]
    return [
        c
        for c in cases
        if c.group == "headline" and c.model in catalog.models and c.gpu in catalog.gpus
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    rows = points(args.data)
    series: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for c in rows:
        phase = "prefill" if c.metric == "ttft" else "decode"
        tokens = c.prompt_tokens if phase == "prefill" else c.context_tokens
        bits = None if c.weight_bits is None else round(c.weight_bits, 3)
        key = (c.source, c.gpu, c.model, c.precision.value, c.engine.value, c.tp, phase,
               c.generation, bits)  # fmt: skip
        series[key].append(f"({c.batch}, {tokens}, {c.measured_ms:.4g})")
    print("# fmt: off")
    print("MEASURED_SERIES: tuple[MeasuredSeries, ...] = (  # bench/truth_points.py prints it")
    for key, figures in series.items():
        head = ", ".join(f'"{k}"' if isinstance(k, str) else repr(k) for k in key[:6])
        tail = ", ".join(f'"{k}"' if isinstance(k, str) else repr(k) for k in key[6:])
        print(f"    MeasuredSeries({head},\n        {tail},")
        print(textwrap.fill(", ".join(figures), 92, initial_indent="        (",
                            subsequent_indent="         ") + ",)),")  # fmt: skip
    print(")")
    print("# fmt: on")
    print(f"# {len(rows)} points in {len(series)} series", file=sys.stderr)


if __name__ == "__main__":
    main()
