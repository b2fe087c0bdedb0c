"""Measure raw torch kernels on a real GPU and print them beside the performance model's roofline.

For the lead to run on an H100 (``NVIDIA H100 80GB HBM3`` = catalog ``h100-sxm``), < 90 s:

    PYTHONPATH=. python3 bench/device_latency_check.py            # GPU picked from its name
    PYTHONPATH=. python3 bench/device_latency_check.py --gpu h100-sxm

Where gridplace's dependencies (pydantic, pyyaml) are missing on the GPU machine, compute the
model's figures elsewhere and carry them over:

    .venv/bin/python bench/device_latency_check.py --gpu h100-sxm --predict-only > figures.json
    python3 bench/device_latency_check.py --figures figures.json     # on the GPU machine

It times, with CUDA events (median of repeats, after warm-up):
1. a bf16 GEMM 8192 x 8192 x 8192: achieved TFLOPS vs the model's compute efficiency;
2. memory bandwidth: a 2 GiB device-to-device copy (read + write);
3. a "decode step": batch-b activations through 32 llama-3.1-8b-shaped layers of random bf16
   weights (QKV 4096->6144, O 4096->4096, gate+up 4096->28672, down 14336->4096) and the LM head
   (4096->128256): every weight GEMM of one step, 16 GB streamed; b = 1, 8, 32; replayed as a CUDA
   graph (as engines do for decode) and, for b = 1, also eagerly;
4. a "prefill": 512 and 2048 tokens through the same layers (LM head on the last token only).

IMPORTANT: these are raw torch GEMMs only: no attention kernel, no norms/RoPE/activations, no
KV cache, no engine. Compare them with the model's *weights* part of a step (``weights_ms``: the
roofline of the weight multiplies with their kernel constants), not with its full TTFT/ITL,
which adds attention, elementwise kernels and the engine's per-step overhead (printed for
reference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LAYERS = 32
HIDDEN = 4096
QKV = 6144  # (32 + 2 x 8) heads x 128
INTERMEDIATE = 14336
VOCAB = 128256


def _timed(torch: object, fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` runs (CUDA events)."""
    cuda = torch.cuda  # type: ignore[attr-defined]
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


DECODE_BATCHES = (1, 8, 32)
PREFILL_TOKENS = (512, 2048)


def model_figures(gpu_id: str) -> dict[str, Any]:
    """What the performance model says for the checks below (needs gridplace importable)."""
    from gridplace.planner.perfmodel import Predictor, builtin_table
    from gridplace.specs import builtin_catalog
    from gridplace.specs.common import Engine, Precision

    catalog = builtin_catalog()
    gpu = catalog.gpus[gpu_id]
    predictor = Predictor(
        catalog.models["llama-3.1-8b"], gpu, Precision.BF16, Engine.VLLM, gpu_id=gpu_id
    )
    gemm = builtin_table().gemm(Engine.VLLM, gpu.architecture, Precision.BF16)
    return {
        "gpu": gpu_id,
        "bandwidthGBps": gpu.memory_bandwidth_gbps,
        "peakTflops": gpu.tensor_tflops.bf16 or gpu.tensor_tflops.fp16,
        "gemm": {
            "bandwidth": gemm.bandwidth,
            "compute": gemm.compute,
            "overlap": gemm.overlap,
            "kernelUs": gemm.kernel_us,
        },
        "decodeWeightsMs": {
            str(b): predictor.roofline.decode(b, 0).weights_ms for b in DECODE_BATCHES
        },
        "decodeItlMs": {str(b): predictor.decode_ms(b, 1024) for b in DECODE_BATCHES},
        "prefillWeightsMs": {
            str(n): predictor.roofline.prefill(1, n).weights_ms for n in PREFILL_TOKENS
        },
        "prefillTtftMs": {str(n): predictor.prefill_ms(1, n) for n in PREFILL_TOKENS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="raw-kernel check of the performance model")
    parser.add_argument("--gpu", help="catalog id (default: from the device name)")
    parser.add_argument("--predict-only", action="store_true", help="print the figures as JSON")
    parser.add_argument("--figures", type=Path, help="figures from --predict-only")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.predict_only:
        print(json.dumps(model_figures(args.gpu or "h100-sxm"), indent=1))
        return 0
    try:
        import torch
    except ImportError:
        print("torch is not installed: nothing to measure", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("no CUDA device visible: nothing to measure", file=sys.stderr)
        return 1
    device_name = torch.cuda.get_device_name(0)
    if args.figures is not None:
        figures = json.loads(args.figures.read_text(encoding="utf-8"))
    else:
        try:
            from gridplace.specs import builtin_catalog

            gpu_id = args.gpu or builtin_catalog().gpu_id(device_name)
            if gpu_id is None:
                print(f"{device_name!r} is not in the catalog; pass --gpu ID", file=sys.stderr)
                return 1
            figures = model_figures(gpu_id)
        except ImportError as error:
            print(f"gridplace is not importable here ({error}); run --predict-only where it is "
                  "and pass --figures", file=sys.stderr)  # fmt: skip
            return 1
    gemm = figures["gemm"]
    peak_tflops, bandwidth_gbps = figures["peakTflops"], figures["bandwidthGBps"]
    print(
        f"device: {device_name} -> catalog {figures['gpu']} ({bandwidth_gbps:g} GB/s, "
        f"{peak_tflops:g} bf16 TFLOPS); torch {torch.__version__}"
    )
    print(
        "raw torch GEMMs only: compare with the model's weights_ms (no attention, norms, engine)\n"
    )
    rows: list[tuple[str, float, float, str]] = []
    dev = torch.device("cuda")
    bf16 = torch.bfloat16

    def section(name: str, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception as error:  # keep going: one failing section must not hide the rest
            rows.append((f"{name} (failed: {type(error).__name__}: {error})"[:90], 0.0, 0.0, ""))
        torch.cuda.empty_cache()

    def gemm_check() -> None:
        size = 8192
        a = torch.randn(size, size, device=dev, dtype=bf16)
        b = torch.randn(size, size, device=dev, dtype=bf16)
        measured = _timed(torch, lambda: a @ b, repeats=20)
        flops = 2.0 * size**3
        memory_ms = 3 * size * size * 2 / (gemm["bandwidth"] * bandwidth_gbps * 1e9) * 1e3
        compute_ms = flops / (gemm["compute"] * peak_tflops * 1e12) * 1e3
        predicted = (
            gemm["kernelUs"] * 1e-3
            + max(memory_ms, compute_ms)
            + gemm["overlap"] * min(memory_ms, compute_ms)
        )
        achieved = flops / (measured * 1e-3) / 1e12
        rows.append(("bf16 GEMM 8192^3", measured, predicted,
                     f"{achieved:.0f} TFLOPS = {achieved / peak_tflops:.2f} of peak "
                     f"(model {gemm['compute']:.2f})"))  # fmt: skip

    def bandwidth_check() -> None:
        elements = 2**30  # 2 GiB of bf16
        source = torch.empty(elements, device=dev, dtype=bf16).uniform_()
        target = torch.empty_like(source)
        measured = _timed(torch, lambda: target.copy_(source), repeats=20)
        moved = 2 * elements * 2
        achieved = moved / (measured * 1e-3) / 1e9
        predicted = moved / (gemm["bandwidth"] * bandwidth_gbps * 1e9) * 1e3
        rows.append(("copy 2 GiB (read+write)", measured, predicted,
                     f"{achieved:.0f} GB/s = {achieved / bandwidth_gbps:.2f} of "
                     f"peak (model GEMV {gemm['bandwidth']:.2f})"))  # fmt: skip

    weights: list[tuple[torch.Tensor, ...]] = []
    head: list[torch.Tensor] = []

    def allocate() -> None:
        for _ in range(LAYERS):
            weights.append(tuple(
                torch.randn(n, k, device=dev, dtype=bf16) * 0.02
                for n, k in ((QKV, HIDDEN), (HIDDEN, HIDDEN), (2 * INTERMEDIATE, HIDDEN),
                             (HIDDEN, INTERMEDIATE))
            ))  # fmt: skip
        head.append(torch.randn(VOCAB, HIDDEN, device=dev, dtype=bf16) * 0.02)

    def forward(x: torch.Tensor, last_only: bool) -> torch.Tensor:
        """All weight GEMMs of one step; shapes flow like a real layer (no attention math)."""
        for w_qkv, w_o, w_up, w_down in weights:
            qkv = x @ w_qkv.T
            x = qkv[:, :HIDDEN] @ w_o.T
            up = x @ w_up.T
            x = up[:, :INTERMEDIATE] @ w_down.T
        tail = x[-1:] if last_only else x
        return tail @ head[0].T

    def decode_check() -> None:
        for batch in DECODE_BATCHES:
            x = torch.randn(batch, HIDDEN, device=dev, dtype=bf16)
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                forward(x, last_only=False)
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                forward(x, last_only=False)
            measured = _timed(torch, graph.replay, repeats=30)
            weights_ms = figures["decodeWeightsMs"][str(batch)]
            itl_ms = figures["decodeItlMs"][str(batch)]
            rows.append((f"decode step b={batch} (CUDA graph)", measured, weights_ms,
                         f"full ITL would be {itl_ms:.2f} ms at 1024 ctx"))  # fmt: skip
            if batch == 1:
                eager = _timed(torch, lambda x=x: forward(x, last_only=False), repeats=20)
                rows.append(("decode step b=1 (eager launches)", eager, weights_ms,
                             "difference to the graph = host launch time"))  # fmt: skip
            del graph

    def prefill_check() -> None:
        for tokens in PREFILL_TOKENS:
            x = torch.randn(tokens, HIDDEN, device=dev, dtype=bf16)
            measured = _timed(torch, lambda x=x: forward(x, last_only=True), repeats=10)
            weights_ms = figures["prefillWeightsMs"][str(tokens)]
            ttft_ms = figures["prefillTtftMs"][str(tokens)]
            rows.append((f"prefill {tokens} tokens (eager)", measured, weights_ms,
                         f"full TTFT would be {ttft_ms:.1f} ms"))  # fmt: skip

    section("bf16 GEMM", gemm_check)
    section("bandwidth", bandwidth_check)
    section("allocate 16 GB of llama-3.1-8b-shaped weights", allocate)
    if weights:
        section("decode", decode_check)
        section("prefill", prefill_check)

    print(f"{'check':36} {'measured ms':>12} {'model ms':>10} {'model/meas':>10}  note")
    for name, measured, predicted, note in rows:
        ratio = f"{predicted / measured:10.2f}" if measured > 0 else f"{'-':>10}"
        print(f"{name:36} {measured:12.3f} {predicted:10.3f} {ratio}  {note}")
    print(f"\ntotal runtime {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
