"""Fit the llama.cpp kernel constants physics leaves open on llama.cpp's own published figures.

Data: ../shared/data/llamacpp (see its SOURCE.md): llama-bench / ./main tokens/s of Llama 7B/13B
on RTX 3090, 3090 Ti, 4090 (F16, Q8_0, Q4_0) and H100 PCIe (Q4_K_M decode). Each row becomes a
case: ``ppN`` -> TTFT of an N-token prompt (N / tokens/s); ``tgN`` -> one decode step (1 /
tokens/s) at the mean context ``n_depth + N/2``. Rows are run on the engine generation of their
date (``llama.cpp-2024-01``: no CUDA graphs, no flash attention, F16 conversion + cuBLAS prompt
path) with CUDA graphs as the row says. Weights' bits come from the file size where the row gives
it, else from the GGUF type.

Left out: the README's prompt rows (build 1275, Sept 2023: old dp4a MMQ prompt kernels, not
modelled), quantization types the precision list lacks (Q2_K, Q3_K_S, Q4_1: no sizes posted),
and ./main prompt rows (prompt length not posted).

Fitted (coordinate search minimising the mean |log(predicted / measured)|, within ``BOUNDS``):
``gemm_compute`` and ``dequant_bandwidth`` (prompt rows), ``mmv_bandwidth`` and
``mmv_unit_gbyte_per_s`` (decode rows: the memory's share and what one SM keeps in flight; the
held-out H100 PCIe fold predicts its decode rows from the GeForce cards' per-SM figure). The rest
of ``LlamaCppConstants`` (kernel floor, launch gap, GEMM tile) are priors.

Reproduce:
    .venv/bin/python bench/calibrate_llamacpp.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gridplace.planner.perfmodel import Predictor
from gridplace.planner.perfmodel.llamacpp import CONSTANTS, LlamaCppConstants
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, EngineOptions, Precision

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
COMMAND = ".venv/bin/python bench/calibrate_llamacpp.py --data ../shared/data"
GENERATION = "llama.cpp-2024-01"
GPUS = {"RTX 3090": "rtx-3090", "RTX 3090 Ti": "rtx-3090-ti", "RTX 4090": "rtx-4090",
        "H100 PCIe": "h100-pcie"}  # fmt: skip
MODELS = {"7B": "llama-2-7b", "13B": "llama-2-13b"}
FITTED = ("gemm_compute", "dequant_bandwidth", "mmv_bandwidth", "mmv_unit_gbyte_per_s")
# Shares of a peak lie in (0.05, 1]; one SM's streaming rate in (1, 100] GB/s.
BOUNDS = {name: (0.05, 1.0) for name in FITTED} | {"mmv_unit_gbyte_per_s": (1.0, 100.0)}
# Where every fit starts: round priors, the HBM share equal to the GDDR one (no evidence yet).
START = dataclasses.replace(
    CONSTANTS,
    gemm_compute=0.5,
    dequant_bandwidth=0.8,
    mmv_bandwidth=0.8,
    mmv_unit_gbyte_per_s=5.0,
)


@dataclass(frozen=True)
class LlamaCase:
    """One published llama.cpp figure and the query that predicts it."""

    source: str
    gpu: str
    model: str
    precision: Precision
    metric: str  # "ttft" or "itl"
    measured_ms: float
    tokens: int  # prompt tokens (ttft) or mean context (itl)
    cuda_graphs: bool
    weight_bits: float | None

    @property
    def label(self) -> str:
        graphs = "graphs" if self.cuda_graphs else "no-graphs"
        return (
            f"{self.gpu:12} {self.model:11} {self.precision.value:6} {self.metric:4} "
            f"{self.tokens:5d} {graphs}"
        )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _case(row: dict[str, str]) -> LlamaCase | None:
    try:
        precision = Precision(row["quant"])
    except ValueError:
        return None  # a type the precision list lacks
    test = row["test"]
    rate = float(row["tokens_per_s"])
    model = MODELS[row["model"].split()[-1]]
    if test.startswith("pp") and test[2:].isdigit():
        if "README" in row["source"]:
            return None  # Sept 2023 dp4a MMQ prompt kernels
        prompt = int(test[2:])
        metric, measured, tokens = "ttft", prompt / rate * 1e3, prompt
    elif test.startswith("tg"):
        generated = int(row["n_gen"] or 128)  # ./main rows: -n 128 (#6763); #6766 not posted
        metric, measured, tokens = "itl", 1e3 / rate, generated // 2
    else:
        return None
    size = float(row["size_gib"]) if row["size_gib"] else None
    bits = size * 2**30 * 8 / (float(row["params_b"]) * 1e9) if size else None
    return LlamaCase(
        source=row["source"].split(" (")[0],
        gpu=GPUS[row["gpu"]],
        model=model,
        precision=precision,
        metric=metric,
        measured_ms=measured,
        tokens=tokens,
        cuda_graphs="with CUDA graphs" in row["note"],
        weight_bits=bits,
    )


def llama_cases(data: Path) -> list[LlamaCase]:
    folder = data / "llamacpp"
    rows = [*_rows(folder / "llama_bench_readme_3090ti.csv"), *_rows(folder / "pr_threads.csv")]
    return [case for case in map(_case, rows) if case is not None]


@lru_cache(maxsize=4096)
def _predictor(
    gpu: str, model: str, precision: Precision, bits: float | None, graphs: bool,
    constants: LlamaCppConstants,
) -> Predictor:  # fmt: skip
    catalog = builtin_catalog()
    return Predictor(
        catalog.models[model],
        catalog.gpus[gpu],
        precision,
        Engine.LLAMA_CPP,
        engine_options=EngineOptions(generation=GENERATION, cuda_graphs=graphs),
        weight_bits_per_parameter=bits,
        llamacpp=constants,
        gpu_id=gpu,
    )


def predicted(case: LlamaCase, constants: LlamaCppConstants) -> float:
    predictor = _predictor(
        case.gpu, case.model, case.precision, case.weight_bits, case.cuda_graphs, constants
    )
    if case.metric == "ttft":
        return predictor.roofline_prefill_ms(1, case.tokens)
    return predictor.roofline_decode_ms(1, case.tokens)


def loss(cases: Iterable[LlamaCase], constants: LlamaCppConstants) -> float:
    errors = [abs(math.log(predicted(c, constants) / c.measured_ms)) for c in cases]
    return sum(errors) / len(errors)


def fit(cases: list[LlamaCase], start: LlamaCppConstants = START) -> LlamaCppConstants:
    """Coordinate search (log steps, shrinking) over the fitted constants, within BOUNDS."""
    best, best_loss = start, loss(cases, start)
    names = FITTED
    step = 0.3
    while step > 0.002:
        improved = False
        for name in names:
            for direction in (1, -1):
                value = getattr(best, name) * math.exp(direction * step)
                low, high = BOUNDS[name]
                if not low < value <= high:
                    continue
                trial = dataclasses.replace(best, **{name: value})
                trial_loss = loss(cases, trial)
                if trial_loss < best_loss - 1e-9:
                    best, best_loss, improved = trial, trial_loss, True
        if not improved:
            step /= 2
    return best


def describe(constants: LlamaCppConstants) -> str:
    return ", ".join(f"{name} {getattr(constants, name):.3f}" for name in FITTED)


def held_out(cases: list[LlamaCase], fold_of: Callable[[LlamaCase], str]) -> dict[LlamaCase, float]:
    """Each case's error predicted with constants fitted on the other folds."""
    errors: dict[LlamaCase, float] = {}
    for fold in sorted({fold_of(c) for c in cases}):
        constants = fit([c for c in cases if fold_of(c) != fold])
        print(f"  fold without {fold:12}: {describe(constants)}")
        for case in (c for c in cases if fold_of(c) == fold):
            errors[case] = predicted(case, constants) / case.measured_ms - 1
    return errors


def summary(errors: list[float]) -> str:
    absolute = sorted(abs(e) for e in errors)
    return (
        f"n={len(errors):3d}  median APE {statistics.median(absolute) * 100:5.1f}%  "
        f"max APE {absolute[-1] * 100:5.1f}%  bias {statistics.median(errors) * 100:+6.1f}%"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    if not (args.data / "llamacpp").is_dir():
        print(f"llama.cpp data not found under {args.data} (pass --data)", file=sys.stderr)
        return 1
    cases = llama_cases(args.data)
    print(f"llama.cpp kernel constants fitted on {len(cases)} published figures")
    print(f"reproduce: {COMMAND}\n")
    constants = fit(cases)
    print(f"all rows (in-sample): {describe(constants)}")
    if any(abs(getattr(constants, n) - getattr(CONSTANTS, n)) > 0.01 for n in FITTED):
        print(f"  NOTE: the package ships {describe(CONSTANTS)}")
    for metric in ("ttft", "itl"):
        fitted = [predicted(c, constants) / c.measured_ms - 1 for c in cases if c.metric == metric]
        print(f"  in-sample {metric.upper():4} {summary(fitted)}")
    print("leave one GPU out:")
    errors = held_out(cases, lambda c: c.gpu)
    for metric in ("ttft", "itl"):
        chosen = [e for c, e in errors.items() if c.metric == metric]
        print(f"  held out  {metric.upper():4} {summary(chosen)}")
    print("\npoints (leave one GPU out):")
    for case, error in errors.items():
        print(
            f"  {case.label:52} measured {case.measured_ms:8.2f} ms  "
            f"predicted {case.measured_ms * (1 + error):8.2f} ms  ({error * 100:+.0f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
