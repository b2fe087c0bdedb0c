"""What each inference engine adds on top of the kernels: per-step overhead, prefill chunking,
memory it keeps for itself, weight formats, start-up time and where it runs.

Owns: these engine traits (documented priors, not fitted: the operator-level calibration data
times kernels, not engines) and the bytes a parameter takes in each engine's weight format.
Must not: time kernels (``roofline``) or decide precision support by architecture (``support``).

Per-step overhead is host time the GPU waits for in every forward step (scheduling, input
preparation, sampling, detokenisation not overlapped with the GPU):
- vLLM (V1 engine, CUDA graphs for decode): 1.5 ms. vLLM's v0.6 performance write-up
  (blog.vllm.ai, 2024-09-05) measured host overhead as a large share of a decode step before
  multi-step/async scheduling; with async scheduling ~1-2 ms remains visible per step.
- SGLang: 1.0 ms (its overlap scheduler hides most host work; lmsys blog 2024-12-04).
- TensorRT-LLM: 0.5 ms (C++ in-flight batching runtime; no Python on the step path).
- llama.cpp: 1.0 ms (ggml graph build + CPU sampling per token with CUDA graphs, since April
  2024; llama.cpp #6763/#6766; without graphs ``llamacpp`` adds a launch gap per kernel).

Eager execution (vLLM/SGLang ``enforce_eager``, releases before CUDA graphs, prefill in many
engines): every op of every layer is launched from the host. The GPU runs asynchronously, so a
step takes max(GPU time, host launch time) plus the per-step overhead. Host time per op: Python
engines 30 us: vLLM PR #1440 (Oct 2023) measured Llama-2-7B eager decoding at 1.2 s per 100
tokens (12 ms per step, an upper bound on the host time of 32 layers: ~0.37 ms per layer, ~30 us
per each of its ~12 ops); Fireworks' llama-cuda-graph-example (vLLM issue #914) measured plain
PyTorch LLaMA-7B at 30 tokens/s eager (~1 ms per layer with unfused ops). C++ runtimes 3-4 us.
With CUDA graphs (the default for decode in all four engines) launches cost nothing extra.

Memory kept by the engine (not weights, not KV cache):
- vLLM: uses ``gpu_memory_utilization`` = 0.90 of VRAM; the other 10% stays free. Inside its share
  it keeps the activation peak of one step of ``max_num_batched_tokens`` (8192) and ~1 GiB for
  CUDA context, CUDA graphs and NCCL buffers.
- SGLang: ``mem_fraction_static`` 0.88, chunked prefill 8192, ~1 GiB runtime.
- TensorRT-LLM: ``kv_cache_free_gpu_mem_fraction`` 0.90 of what is free after weights and
  activations (so 10% of that remainder stays free), ``max_num_tokens`` 8192, ~1 GiB runtime.
- llama.cpp: allocates exactly what it needs: CUDA context (~0.4 GiB) and a compute buffer sized
  by its micro-batch (``n_ubatch`` 512 tokens).

Weight formats (bytes per parameter, scales included):
- bf16/fp16: 2. fp8: 1 (per-tensor/channel scales are negligible).
- int8 weight-only: 1 (per-channel scales); llama.cpp Q8_0: 8.5 bits.
- int4 weight-only: AWQ/GPTQ with group size 128 store a 16-bit scale and a packed 4-bit zero
  per group: 4 + 20/128 = 4.16 bits; llama.cpp Q4_K_M averages ~4.85 bits.
- vLLM, SGLang and TensorRT-LLM checkpoints keep the embedding and LM head in 16 bits; llama.cpp
  quantizes them too (Q4_K_M writes the output matrix as Q6_K: ~6.56 bits).
- GGUF types (``Precision.q4_k_m`` ...) carry their own bits (``specs.common.GGUF_BITS``): the
  token embedding at the type's base block format, the output matrix at Q6_K or better.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridplace.specs.common import GGUF_BITS, GGUF_EMBEDDING_BITS, Engine, Precision

GIB = 2**30


@dataclass(frozen=True, slots=True)
class EngineTraits:
    """One engine's behaviour that the kernels do not show (see the module docstring)."""

    engine: Engine
    step_overhead_ms: float  # host time per forward step the GPU waits for
    eager_op_us: float  # host time to launch one op when not captured in a CUDA graph
    prefill_chunk_tokens: int  # most tokens one forward step processes (chunked prefill/ubatch)
    memory_utilization: float  # share of VRAM the engine budgets for itself (vLLM's 0.9)
    utilization_of_free: bool  # True: the share applies to memory left after weights (TRT-LLM)
    runtime_reserve_gib: float  # CUDA/HIP context, CUDA graphs, communicator buffers
    activation_tokens: int  # tokens per step that size the activation workspace
    quantizes_embeddings: bool  # llama.cpp quantizes embedding and LM head as well
    int8_bits: float  # bits per weight of its int8 weight-only format, scales included
    int4_bits: float  # bits per weight of its int4 weight-only format, scales included
    head_bits_quantized: float  # bits per LM-head weight when the weights are quantized
    init_s: float  # start-up after the weights are on the GPU (compile, graph capture), s
    nvidia_only: bool
    fp8: bool  # has an FP8 (W8A8) weight format
    # Host time per running sequence per decode step. Today's engines batch this bookkeeping
    # (0 here); 2023 releases did it in Python per sequence (``generations``).
    sequence_overhead_us: float = 0.0


ENGINES: dict[Engine, EngineTraits] = {
    Engine.VLLM: EngineTraits(
        engine=Engine.VLLM,
        step_overhead_ms=1.5,
        eager_op_us=30.0,
        prefill_chunk_tokens=8192,
        memory_utilization=0.90,
        utilization_of_free=False,
        runtime_reserve_gib=1.0,
        activation_tokens=8192,
        quantizes_embeddings=False,
        int8_bits=8.0,
        int4_bits=4.0 + 20 / 128,
        head_bits_quantized=16.0,
        # torch.compile (cached after the first start) and CUDA-graph capture.
        init_s=30.0,
        nvidia_only=False,
        fp8=True,
    ),
    Engine.SGLANG: EngineTraits(
        engine=Engine.SGLANG,
        step_overhead_ms=1.0,
        eager_op_us=30.0,
        prefill_chunk_tokens=8192,
        memory_utilization=0.88,
        utilization_of_free=False,
        runtime_reserve_gib=1.0,
        activation_tokens=8192,
        quantizes_embeddings=False,
        int8_bits=8.0,
        int4_bits=4.0 + 20 / 128,
        head_bits_quantized=16.0,
        init_s=25.0,
        nvidia_only=False,
        fp8=True,
    ),
    Engine.TENSORRT_LLM: EngineTraits(
        engine=Engine.TENSORRT_LLM,
        step_overhead_ms=0.5,
        eager_op_us=3.0,
        prefill_chunk_tokens=8192,
        memory_utilization=0.90,
        utilization_of_free=True,
        runtime_reserve_gib=1.0,
        activation_tokens=8192,
        quantizes_embeddings=False,
        int8_bits=8.0,
        int4_bits=4.0 + 20 / 128,
        head_bits_quantized=16.0,
        # Deserialising a prebuilt engine; building one takes minutes and is done ahead of time.
        init_s=10.0,
        nvidia_only=True,
        fp8=True,
    ),
    Engine.LLAMA_CPP: EngineTraits(
        engine=Engine.LLAMA_CPP,
        step_overhead_ms=1.0,
        eager_op_us=4.0,
        prefill_chunk_tokens=512,
        memory_utilization=1.0,
        utilization_of_free=False,
        runtime_reserve_gib=0.4,
        activation_tokens=512,
        quantizes_embeddings=True,
        int8_bits=8.5,
        int4_bits=4.85,
        head_bits_quantized=6.5625,  # Q6_K
        init_s=2.0,
        nvidia_only=False,
        fp8=False,
    ),
}


def weight_bits(precision: Precision, engine: Engine) -> float:
    """Bits one transformer-layer weight takes in ``engine``'s format at ``precision``."""
    traits = ENGINES[engine]
    if precision.is_gguf:
        return GGUF_BITS[precision]
    if precision is Precision.INT4:
        return traits.int4_bits
    if precision is Precision.INT8:
        return traits.int8_bits
    return precision.bytes_per_parameter * 8


def head_bits(precision: Precision, engine: Engine) -> float:
    """Bits an embedding / LM-head weight takes (16-bit unless the engine quantizes them)."""
    traits = ENGINES[engine]
    if precision in (Precision.BF16, Precision.FP16):
        return 16.0
    if precision.is_gguf:
        # Mean of the two tables: token embedding at the base type, output matrix >= Q6_K.
        output = max(traits.head_bits_quantized, GGUF_BITS[precision])
        return (GGUF_EMBEDDING_BITS[precision] + output) / 2
    if traits.quantizes_embeddings:
        # llama.cpp never stores the output matrix below Q6_K; Q8_0 models keep it at Q8_0.
        return max(traits.head_bits_quantized, weight_bits(precision, engine))
    return traits.head_bits_quantized
