"""Fit the performance model's efficiency table from operator-level measurements.

Reads the public calibration data (../shared/data/calibration; see its README/SOURCE files):
- aiconfigurator (NVIDIA, Apache-2.0): vLLM 0.14 GEMM, decode-attention and prefill-attention
  kernel latencies on A100-SXM, H100-SXM, H200-SXM and L40S (parquet; needs pyarrow);
- Vidur (Microsoft, MIT): per-operator timings of Llama-2-7B/70B and CodeLlama-34B layers versus
  tokens and tensor-parallel degree on A100, H100 and A40 (csv.gz);
- LLMCompass (BSD-3-Clause): measured matmul timings on A100 and MI210 (csv).
End-to-end measurements (../shared/data/validation, ../shared/data/splitwise) are NOT read here:
they are what ``bench/perfmodel_accuracy.py`` judges the fitted model against.

Writes ``gridplace/planner/perfmodel/data/efficiency.yaml`` (the committed package data the
runtime reads) with the provenance: sources, fit method, date, per-device figures and residuals.

Fit method (per device and precision; peaks are the GPU catalog's nameplate figures):
1. GEMM, memory side: points with m <= 16 tokens and >= 16 MB moved; least squares
   latency = k + bytes / (eta_bw x peak GB/s) gives the kernel constant k and eta_bw.
2. GEMM, compute side: points with m >= 2048 and >= 0.2 ms of ideal compute; eta_c is the median
   of flops / (peak x (latency - k)); its 90th percentile is kept as the tuned-kernel figure and
   its 99th as the tuned fp8 figure (see ``ENGINE_RULES``).
3. GEMM, overlap: alpha in time = k + max(M, C) + alpha x min(M, C) (M, C the memory and compute
   times at the fitted efficiencies) by grid search (0..1, step 0.05) minimising the RMS log error
   over every LLM-shaped point (n, k in 1024-32768). A tile-ramp form (C x (1 + m_half / m)) fits
   these data no better and overprices small-m multiplies of 4-bit weights, so it was dropped.
4. Decode attention: k is the median latency of tiny calls (< 1 MB of KV, batch <= 8); weighted
   least squares (weights 1/latency) of latency - k = batch x s + KV bytes / (eta x peak GB/s)
   over KV sets >= 256 MB (beyond every L2 cache); at least 8 query heads.
5. Prefill attention: weighted least squares of latency = k + F / (eta x peak) x (1 + n_half / isl)
   with F the causal flops (4 x batch x isl (isl+1)/2 x heads x head_dim), isl >= 64.
6. Elementwise (Vidur: both RMSNorms, RoPE, activation, residual add per layer): weighted least
   squares of latency = k + bytes / (eta x peak GB/s), bytes from ``elementwise_bytes_per_token``.
A family's figure is the mean over its devices' fits. Families and engines without data get
documented priors (``PRIORS`` and ``ENGINE_RULES`` in calibrate_perfmodel_table.py); every
entry records its basis.

Reproduce:
    .venv/bin/python bench/calibrate_perfmodel.py            # fits, prints, writes the table
    .venv/bin/python bench/calibrate_perfmodel.py --dry-run  # fits and prints only
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from calibrate_perfmodel_table import HEADER, Fit, build_table, plain

from gridplace.planner.perfmodel.efficiency import EfficiencyDocument
from gridplace.planner.perfmodel.roofline import elementwise_bytes_per_token
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Precision

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "calibration"
DEFAULT_OUT = REPO / "gridplace" / "planner" / "perfmodel" / "data" / "efficiency.yaml"

# Measured device -> (catalog id, architecture family).
AICONFIGURATOR = {
    "a100_sxm": "a100-sxm-80gb",
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "l40s": "l40s",
}
VIDUR = {"a100": "a100-sxm-80gb", "h100": "h100-sxm", "a40": "a40"}
LLMCOMPASS = {"A100": "a100-sxm-80gb", "MI210": "mi210"}
GEMM_DTYPES = {
    "bfloat16": Precision.BF16,
    "fp8": Precision.FP8,
}  # fp8_block is not a format we plan

# ------------------------------------------------------------------------------- fitting


def fit_gemm(
    latency_ms: np.ndarray,
    moved_bytes: np.ndarray,
    flops: np.ndarray,
    tokens: np.ndarray,
    bandwidth_gbyte_per_s: float,
    peak_tflops: float,
) -> tuple[dict[str, float], np.ndarray]:
    """Steps 1-3 of the module docstring; returns figures and the fitted latencies."""
    memory_bound = (tokens <= 16) & (moved_bytes >= 16e6)
    design = np.vstack([np.ones(memory_bound.sum()), moved_bytes[memory_bound]]).T
    constant, slope = np.linalg.lstsq(design, latency_ms[memory_bound], rcond=None)[0]
    constant = max(float(constant), 0.0)
    bandwidth = 1.0 / (slope * bandwidth_gbyte_per_s * 1e9 / 1e3)
    ideal_ms = flops / (peak_tflops * 1e12) * 1e3
    compute_bound = (tokens >= 2048) & (ideal_ms >= 0.2)
    efficiency = ideal_ms[compute_bound] / (latency_ms[compute_bound] - constant)
    compute = float(np.median(efficiency))
    compute_best = float(np.percentile(efficiency, 90))
    compute_tuned = float(np.percentile(efficiency, 99))
    memory_ms = moved_bytes / (bandwidth * bandwidth_gbyte_per_s * 1e9) * 1e3
    overlap, predicted = fit_overlap(latency_ms, constant, memory_ms, ideal_ms / compute)
    figures = {
        "bandwidth": min(bandwidth, 1.0),
        "compute": min(compute, 1.0),
        "computeBest": min(compute_best, 1.0),
        "computeTuned": min(compute_tuned, 1.0),
        "overlap": overlap,
        "kernelUs": constant * 1e3,
    }
    return figures, predicted


def fit_overlap(
    latency_ms: np.ndarray, constant_ms: float, memory_ms: np.ndarray, compute_ms: np.ndarray
) -> tuple[float, np.ndarray]:
    """The overlap share alpha minimising the RMS log error (step 3), and the fitted latencies."""
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in np.linspace(0.0, 1.0, 21):
        predicted = (
            constant_ms
            + np.maximum(memory_ms, compute_ms)
            + alpha * np.minimum(memory_ms, compute_ms)
        )
        error = float(np.sqrt(np.mean(np.log(predicted / latency_ms) ** 2)))
        if best is None or error < best[0]:
            best = (error, float(alpha), predicted)
    assert best is not None
    return best[1], best[2]


def weighted_least_squares(design: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Least squares on relative error (rows weighted by 1 / latency)."""
    weights = 1.0 / latency
    coefficients = np.linalg.lstsq(design * weights[:, None], latency * weights, rcond=None)[0]
    return np.asarray(coefficients)


def aiconfigurator_gemm(data: Path, device: str) -> list[Fit]:
    gpu_id = AICONFIGURATOR[device]
    gpu = builtin_catalog().gpus[gpu_id]
    frame = pd.read_parquet(
        data / "aiconfigurator" / f"{device}__gemm_vllm_0.14.0_gemm_perf.parquet"
    )
    shaped = frame[frame.n.between(1024, 32768) & frame.k.between(1024, 32768)]
    fits = []
    for dtype, precision in GEMM_DTYPES.items():
        points = shaped[shaped.gemm_dtype == dtype]
        if points.empty:
            continue
        element = 1 if precision is Precision.FP8 else 2
        m, n, k = (points[c].to_numpy(dtype=float) for c in ("m", "n", "k"))
        moved = (m * k + k * n) * element + m * n * 2  # output in 16 bits
        peak = gpu.tensor_tflops.for_precision(precision)
        assert peak is not None
        figures, predicted = fit_gemm(
            points.latency.to_numpy(), moved, 2 * m * n * k, m, gpu.memory_bandwidth_gbps, peak
        )
        fits.append(
            Fit(
                gpu_id,
                "gemm",
                precision,
                f"aiconfigurator {device} gemm {dtype} (vLLM 0.14)",
                figures,
                predicted,
                points.latency.to_numpy(),
            )
        )
    return fits


def vidur_frame(data: Path) -> pd.DataFrame:
    with gzip.open(data / "vidur_mlp_median_ms.csv.gz", "rt") as handle:
        return pd.read_csv(handle)


def vidur_gemm(frame: pd.DataFrame, device: str) -> Fit:
    """The four linear layers of each Vidur row as GEMM points (bf16/fp16)."""
    gpu_id = VIDUR[device]
    gpu = builtin_catalog().gpus[gpu_id]
    rows = frame[frame.gpu == device]
    tp = rows.num_tensor_parallel_workers.to_numpy()
    hidden = rows.n_embd.to_numpy()
    head_dim = hidden // rows.n_head.to_numpy()
    qkv = (rows.n_head.to_numpy() + 2 * rows.n_kv_head.to_numpy()) * head_dim // tp
    width = rows.n_expanded_embd.to_numpy()
    shapes = [  # (latency column, k, n)
        ("attn_pre_proj_ms", hidden, qkv),
        ("attn_post_proj_ms", rows.n_head.to_numpy() * head_dim // tp, hidden),
        ("mlp_up_proj_ms", hidden, 2 * width // tp),
        ("mlp_down_proj_ms", width // tp, hidden),
    ]
    m = np.concatenate([rows.num_tokens.to_numpy(dtype=float)] * 4)
    k = np.concatenate([s[1] for s in shapes]).astype(float)
    n = np.concatenate([s[2] for s in shapes]).astype(float)
    latency = np.concatenate([rows[s[0]].to_numpy(dtype=float) for s in shapes])
    moved = (m * k + k * n + m * n) * 2
    peak = gpu.tensor_tflops.fp16 or gpu.tensor_tflops.bf16
    assert peak is not None
    figures, predicted = fit_gemm(latency, moved, 2 * m * n * k, m, gpu.memory_bandwidth_gbps, peak)
    return Fit(
        gpu_id,
        "gemm",
        Precision.BF16,
        f"vidur {device} linear layers (fp16)",
        figures,
        predicted,
        latency,
    )


def vidur_elementwise(frame: pd.DataFrame, device: str) -> Fit:
    gpu_id = VIDUR[device]
    gpu = builtin_catalog().gpus[gpu_id]
    rows = frame[frame.gpu == device]
    columns = [
        "input_layernorm_ms",
        "attn_rope_ms",
        "post_attention_layernorm_ms",
        "mlp_act_ms",
        "add_ms",
    ]
    latency = rows[columns].sum(axis=1).to_numpy(dtype=float)
    per_token = np.array(
        [
            elementwise_bytes_per_token(
                int(r.n_embd),
                int(r.n_head),
                int(r.n_kv_head),
                int(r.n_embd // r.n_head),
                int(r.n_expanded_embd),
                int(r.num_tensor_parallel_workers),
            )
            for r in rows.itertuples()
        ]
    )
    moved_ms = rows.num_tokens.to_numpy() * per_token / (gpu.memory_bandwidth_gbps * 1e9) * 1e3
    design = np.vstack([np.ones_like(latency), moved_ms]).T
    constant, slope = weighted_least_squares(design, latency)
    figures = {"bandwidth": min(1.0 / slope, 1.0), "layerUs": max(constant, 0.0) * 1e3}
    predicted = figures["layerUs"] / 1e3 + moved_ms / figures["bandwidth"]
    return Fit(
        gpu_id,
        "elementwise",
        None,
        f"vidur {device} norms+rope+act+add",
        figures,
        predicted,
        latency,
    )


def aiconfigurator_attention(data: Path, device: str) -> list[Fit]:
    gpu_id = AICONFIGURATOR[device]
    gpu = builtin_catalog().gpus[gpu_id]
    bandwidth = gpu.memory_bandwidth_gbps * 1e9
    peak = (gpu.tensor_tflops.bf16 or gpu.tensor_tflops.fp16 or 0.0) * 1e12
    base = data / "aiconfigurator"
    decode = pd.read_parquet(
        base / f"{device}__attention_vllm_0.14.0_generation_attention_perf.parquet"
    )
    decode = decode[
        (decode.kv_cache_dtype == "bfloat16")
        & (decode.kernel_source == "vllm_flash_attn")
        & (decode.num_heads >= 8)
        & (decode.batch_size <= 512)
    ]
    kv_bytes = (
        decode.batch_size * (decode.step + 1) * decode.num_key_value_heads * decode.head_dim * 2 * 2
    ).to_numpy(dtype=float)
    all_latency = decode.latency.to_numpy(dtype=float)
    all_batch = decode.batch_size.to_numpy(dtype=float)
    # The kernel constant is what a tiny decode attention costs; the slope and the per-sequence
    # cost come from KV sets well beyond the L2 cache (L40S: 96 MB), where bandwidth rules.
    tiny = (kv_bytes < 1e6) & (all_batch <= 8)
    constant = float(np.median(all_latency[tiny]))
    large = kv_bytes >= 256e6
    design = np.vstack([all_batch[large], kv_bytes[large] / bandwidth * 1e3]).T
    per_sequence, slope = weighted_least_squares(design, all_latency[large] - constant)
    decode_figures = {
        "decodeBandwidth": min(1.0 / slope, 1.0),
        "decodeKernelUs": constant * 1e3,
        "decodeSequenceUs": max(per_sequence, 0.0) * 1e3,
    }
    judged = kv_bytes >= 8e6
    latency, batch, kv_bytes = all_latency[judged], all_batch[judged], kv_bytes[judged]
    decode_predicted = (
        decode_figures["decodeKernelUs"] + batch * decode_figures["decodeSequenceUs"]
    ) / 1e3 + kv_bytes / bandwidth * 1e3 / decode_figures["decodeBandwidth"]
    prefill = pd.read_parquet(
        base / f"{device}__attention_vllm_0.14.0_context_attention_perf.parquet"
    )
    prefill = prefill[
        (prefill.kv_cache_dtype == "bfloat16")
        & (prefill.kernel_source == "vllm_flash_attn")
        & (prefill.num_heads >= 8)
        & (prefill.isl >= 64)
    ]
    isl = prefill.isl.to_numpy(dtype=float)
    ideal_ms = (
        (
            4.0 * prefill.batch_size * isl * (isl + 1) / 2 * prefill.num_heads * prefill.head_dim
        ).to_numpy(dtype=float)
        / peak
        * 1e3
    )
    p_latency = prefill.latency.to_numpy(dtype=float)
    design = np.vstack([np.ones_like(p_latency), ideal_ms, ideal_ms / isl]).T
    constant, inverse, ramp = weighted_least_squares(design, p_latency)
    prefill_figures = {
        "prefillCompute": min(1.0 / inverse, 1.0),
        "prefillHalfTokens": max(ramp / inverse, 0.0),
        "prefillKernelUs": max(constant, 0.0) * 1e3,
    }
    prefill_predicted = prefill_figures["prefillKernelUs"] / 1e3 + ideal_ms / prefill_figures[
        "prefillCompute"
    ] * (1 + prefill_figures["prefillHalfTokens"] / isl)
    return [
        Fit(
            gpu_id,
            "decode-attention",
            None,
            f"aiconfigurator {device} generation attention bf16",
            decode_figures,
            decode_predicted,
            latency,
        ),
        Fit(
            gpu_id,
            "prefill-attention",
            None,
            f"aiconfigurator {device} context attention bf16",
            prefill_figures,
            prefill_predicted,
            p_latency,
        ),
    ]


def llmcompass_gemm(data: Path, device: str) -> Fit:
    gpu_id = LLMCOMPASS[device]
    gpu = builtin_catalog().gpus[gpu_id]
    rows = []
    for line in (data / "llmcompass" / f"fig5_ab_matmul_{device}.csv").read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 4:
            rows.append(
                (
                    float(fields[0]),
                    float(fields[1]),
                    float(fields[2]),
                    float(fields[3].removesuffix("ms")),
                )
            )
    m, k, n, latency = (np.array(c) for c in zip(*rows, strict=True))
    moved = (m * k + k * n + m * n) * 2
    flops = 2 * m * n * k
    peak = gpu.tensor_tflops.fp16 or 0.0
    ideal_ms = flops / (peak * 1e12) * 1e3
    compute_bound = ideal_ms >= 0.2
    compute = float(np.median(ideal_ms[compute_bound] / latency[compute_bound]))
    constant = float(np.min(latency))  # the flattest, smallest shapes
    memory_ms = moved / (gpu.memory_bandwidth_gbps * 1e9) * 1e3
    small = (m <= 128) & (k >= 4096)
    bandwidth = float(np.median(memory_ms[small] / latency[small])) if small.any() else float("nan")
    # Its smallest shapes are latency-bound, not bandwidth-bound: price the memory side at the
    # measured small-batch bandwidth so the overlap fit sees the compute transition only.
    overlap, predicted = fit_overlap(latency, constant, memory_ms / bandwidth, ideal_ms / compute)
    figures = {
        "compute": min(compute, 1.0),
        "overlap": overlap,
        "kernelUs": constant * 1e3,
        "measuredSmallBatchBandwidth": bandwidth,
    }
    return Fit(
        gpu_id,
        "gemm",
        Precision.FP16,
        f"llmcompass {device} matmul (fp16)",
        figures,
        predicted,
        latency,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--dry-run", action="store_true", help="print the fits, write nothing")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"calibration data not found at {args.data} (pass --data)", file=sys.stderr)
        return 1
    fits: list[Fit] = []
    for device in AICONFIGURATOR:
        fits += aiconfigurator_gemm(args.data, device)
        fits += aiconfigurator_attention(args.data, device)
    vidur = vidur_frame(args.data)
    for device in VIDUR:
        fits.append(vidur_gemm(vidur, device))
        fits.append(vidur_elementwise(vidur, device))
    for device in LLMCOMPASS:
        fits.append(llmcompass_gemm(args.data, device))
    print(
        f"{'device':15} {'kind':18} {'prec':5} {'figures':70} {'rmsLog':>7} {'medAPE':>7} {'n':>6}"
    )
    for fit in fits:
        shown = " ".join(f"{k}={v:.3g}" for k, v in fit.figures.items())
        r = fit.residuals()
        precision = fit.precision.value if fit.precision else "-"
        print(
            f"{fit.device:15} {fit.kind:18} {precision:5} {shown:70} "
            f"{r['rmsLogError']:7.3f} {r['medianApe']:7.3f} {r['points']:6d}"
        )
    method = " ".join((__doc__ or "").split("Fit method")[1].split("Reproduce:")[0].split())
    table = plain(build_table(fits, args.data, method))
    EfficiencyDocument.model_validate(table)  # the runtime must be able to read what we write
    if args.dry_run:
        return 0
    text = HEADER + yaml.safe_dump(table, sort_keys=False, width=100, default_flow_style=None)
    args.out.write_text(text, encoding="utf-8")
    print(
        f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out} "
        f"({len(table['gemm'])} gemm entries)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
