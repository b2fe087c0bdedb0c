"""llama.cpp's step times from how its CUDA/HIP backend runs a model, and its engine settings.

Owns: the llama.cpp settings (flash attention, micro-batch, CUDA graphs, KV cache type, prompt
kernels) with today's defaults, and the step-time formulas of its kernels. Must not: read tables
or files (it is handed the attention/elementwise efficiencies) or decide support.

Mechanisms (llama.cpp ``ggml-cuda``; one micro-batch of ``ubatchTokens`` = n_ubatch, 512):
- Prompt weights, ``cublas`` path (every release before mid-2024; F16 files always): for more
  than 32 tokens a quantized matrix is converted to F16 once per micro-batch (reads bits/8 and
  writes 2 bytes per weight at ``dequant_bandwidth`` of peak GB/s), then multiplied with cuBLAS
  at a 16-bit compute type: on GeForce the FP16-accumulate tensor rate (``fp16Acc16``, twice the
  FP32-accumulate rate the catalog's ``fp16`` is), elsewhere the ``fp16`` rate, at
  ``gemm_compute`` of that peak for a full wave of tiles.
- Waves: each GEMM's output (rows x micro-batch tokens) is cut into 128 x 128 tiles, one per SM
  per wave; the last wave runs part empty (4096 rows x 512 tokens = 128 tiles: one full wave on a
  128-SM RTX 4090, 1.56 waves on an 82-SM RTX 3090 or a 108-SM A100), and so does a tile
  column the tokens fill in part. That is why a 3090 reaches a smaller share of its peak than a
  4090 at n_ubatch 512. The SM counts are ``compute_units``; unknown GPUs get no wave loss.
- Prompt weights, ``mmq`` path (default since mid-2024 on GPUs with int8 tensor cores, llama.cpp
  #8075): its own kernels multiply the quantized weights directly: no conversion pass. Its rate is
  a prior: the cuBLAS path's effective rate (the PR made MMQ the default where it at least
  matched dequantize + cuBLAS at n_ubatch 512).
- Attention without flash attention: each micro-batch multiplies against the whole KV cache so
  far (padded to 256), not the causal triangle, and the F32 score matrix goes through memory:
  written by KQ, read and written by softmax, read and converted for KQV (``SCORE_BYTES`` per
  score). With flash attention: the causal pairs at the FlashAttention efficiency of the table.
  In decode the non-flash path multiplies each query head against its KV head separately: the
  KV cache is read heads / KV heads times.
- Decode weights: llama.cpp's quantized matrix-vector kernels are latency-bound: each SM keeps
  a fixed number of loads in flight, so by Little's law they stream at most
  ``mmv_unit_gbyte_per_s`` per SM, and at most ``mmv_bandwidth`` of the memory's peak. GDDR
  boards have little bandwidth per SM (RTX 4090: 7.9 GB/s) and are memory-bound; HBM parts have
  much more (H100 PCIe: 17.5, A100 80GB: 18.9 GB/s per SM) and reach about half their peak:
  the memory technology matters through bandwidth per SM, not as a separate figure.
- Every op is one kernel (``KERNELS_PER_LAYER`` per layer; each costs at least ``kernel_us`` on
  the GPU). Host time per step is the engine's step overhead (~1 ms with CUDA graphs); without
  graphs (before April 2024, and HIP builds on AMD GPUs) each kernel adds a launch gap
  (``launch_us``).
- Activations stay in F32 between ops: the elementwise kernels move 4-byte values.
- Multi-GPU llama.cpp splits layers (``-sm layer``): the GPUs run one after the other, so the
  step costs what one GPU holding all layers would take (weights and KV split in memory only).

Constants: ``gemm_compute``, ``dequant_bandwidth``, ``mmv_bandwidth`` and
``mmv_unit_gbyte_per_s`` are the ones physics leaves open; they are fitted by
``bench/calibrate_llamacpp.py`` on llama.cpp's own published llama-bench figures (printed there
with the fit's residuals). ``kernel_us``, ``launch_us``, the tile and the kernel count are priors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gridplace.planner.perfmodel.efficiency import AttentionEfficiency, ElementwiseEfficiency
from gridplace.planner.perfmodel.roofline import StepTime, elementwise_bytes_per_token
from gridplace.planner.perfmodel.shape import ModelShape
from gridplace.specs.common import Backend, EngineOptions, KvCacheType, PromptKernels, Vendor

# Kernels one Llama layer launches in ggml-cuda: 2 RMSNorm + 2 mul, Q/K/V matmuls, 2 RoPE, 2 KV
# copies, KQ, softmax, KQV, cont, O matmul, add, gate and up matmuls, SiLU, mul, down, add.
KERNELS_PER_LAYER = 22
SCORE_BYTES = 4 + 4 + 4 + 4 + 2 + 2  # per F32 score: KQ write, softmax r/w, KQV convert r/w
KV_PAD_TOKENS = 256  # the non-flash path pads the KV length it multiplies against
MMQ_MAX_TOKENS = 32  # up to here quantized weights always go through llama.cpp's own kernels
F32_BYTES = 4


@dataclass(frozen=True, slots=True)
class LlamaCppSettings:
    """llama.cpp settings that change its speed (see the module docstring)."""

    flash_attention: bool
    ubatch_tokens: int
    cuda_graphs: bool
    kv_cache_type: KvCacheType
    prompt_kernels: PromptKernels

    def with_options(self, options: EngineOptions | None) -> LlamaCppSettings:
        """These settings with whatever ``options`` sets."""
        if options is None:
            return self
        o = options
        return LlamaCppSettings(
            flash_attention=self.flash_attention
            if o.flash_attention is None
            else o.flash_attention,
            ubatch_tokens=o.ubatch_tokens or self.ubatch_tokens,
            cuda_graphs=self.cuda_graphs if o.cuda_graphs is None else o.cuda_graphs,
            kv_cache_type=o.kv_cache_type or self.kv_cache_type,
            prompt_kernels=o.prompt_kernels or self.prompt_kernels,
        )


# llama.cpp today (2025 builds): flash attention "auto" (on where the GPU supports it), n_ubatch
# 512, CUDA graphs, F16 KV cache, MMQ prompt kernels for quantized weights.
TODAY = LlamaCppSettings(
    flash_attention=True,
    ubatch_tokens=512,
    cuda_graphs=True,
    kv_cache_type=KvCacheType.F16,
    prompt_kernels=PromptKernels.MMQ,
)


def resolve_settings(
    release: EngineOptions | None, options: EngineOptions | None, vendor: Vendor
) -> LlamaCppSettings:
    """Today's defaults <- the release's (a generation) <- the backend's <- ``options``.

    The backend is ``options.backend``, else CUDA on NVIDIA and HIP on AMD. ggml's CUDA graphs
    are a CUDA feature: HIP builds (ROCm) run without them unless built with GGML_HIP_GRAPHS (off
    by default), so every kernel pays its launch. The Vulkan backend records the whole graph into
    command buffers (no per-kernel launch from the host, as with graphs) and its matrix shaders
    dequantize as they load (no F16 conversion pass, as MMQ).
    """
    settings = TODAY.with_options(release)
    backend = options.backend if options is not None else None
    backend = backend or (Backend.HIP if vendor is Vendor.AMD else Backend.CUDA)
    if backend is Backend.HIP:
        settings = dataclasses.replace(settings, cuda_graphs=False)
    elif backend is Backend.VULKAN:
        settings = dataclasses.replace(settings, cuda_graphs=True, prompt_kernels=PromptKernels.MMQ)
    return settings.with_options(options)


@dataclass(frozen=True, slots=True)
class LlamaCppConstants:
    """The kernel figures (see the module docstring for which are fitted)."""

    gemm_compute: float  # share of the 16-bit tensor peak a full wave of GEMM tiles reaches
    dequant_bandwidth: float  # share of peak GB/s of the F16 conversion pass
    mmv_bandwidth: float  # share of peak GB/s decode kernels reach where memory is the limit
    mmv_unit_gbyte_per_s: float  # GB/s one SM (CU) keeps in flight in the decode kernels
    kernel_us: float = 2.0  # least GPU time of one kernel (launch latency, tail)
    launch_us: float = 1.0  # host launch gap per kernel without CUDA graphs
    tile: int = 128  # output rows and columns of one GEMM tile (one SM's share of a wave)

    def mmv_gbyte_per_s(self, bandwidth_gbyte_per_s: float, compute_units: int | None) -> float:
        """GB/s the decode kernels stream: the memory's share, or what the SMs keep in flight
        (Little's law: bytes in flight over the memory latency), whichever is smaller."""
        memory = self.mmv_bandwidth * bandwidth_gbyte_per_s
        if compute_units is None:
            return memory
        return min(memory, compute_units * self.mmv_unit_gbyte_per_s)

    def wave_share(self, rows: int, tokens: float, compute_units: int | None) -> float:
        """Share of the SMs' tile slots a GEMM of ``rows`` outputs x ``tokens`` columns fills.

        Its output is cut into ``tile`` x ``tile`` tiles, one per SM per wave: the last wave runs
        part empty, and so does a tile column the tokens fill only in part. Fewer tiles than SMs
        are split along K (cuBLAS split-K) into as many whole copies as the SMs hold.
        """
        columns = max(math.ceil(tokens / self.tile), 1)
        padding = tokens / (columns * self.tile)
        if compute_units is None:
            return padding
        tiles = math.ceil(rows / self.tile) * columns
        work = tiles * max(compute_units // tiles, 1)
        waves = math.ceil(work / compute_units)
        return padding * work / (waves * compute_units)


# Fitted by bench/calibrate_llamacpp.py (command and residuals there) on
# ../shared/data/llamacpp (RTX 3090 / 3090 Ti / 4090 llama-bench rows, H100 PCIe decode).
# The conversion pass comes out at the bound (1.0): it streams at what the card's memory gives.
# The decode kernels: ~9.6 GB/s per SM; the RTX 3090 and 3090 Ti are at that limit as well as
# near their memory's, the 4090 at its memory's (0.99 of nameplate).
CONSTANTS = LlamaCppConstants(
    gemm_compute=0.536,
    dequant_bandwidth=1.0,
    mmv_bandwidth=0.988,
    mmv_unit_gbyte_per_s=9.57,
)


@dataclass(frozen=True, slots=True)
class LlamaCppHardware:
    """Peak figures of one GPU after derate, as llama.cpp's kernels use them."""

    bandwidth_gbyte_per_s: float
    fp16_tflops: float  # cuBLAS 16-bit compute type (FP16 accumulate where it is faster)
    attention_tflops: float  # FlashAttention kernels (FP32 accumulate)
    compute_units: int | None = None  # SMs (CUs); None: unknown, no wave or in-flight limits


class LlamaCppRoofline:
    """Prefill and decode step times of llama.cpp for one model on one GPU."""

    def __init__(
        self,
        shape: ModelShape,
        hardware: LlamaCppHardware,
        attention: AttentionEfficiency,
        elementwise: ElementwiseEfficiency,
        settings: LlamaCppSettings,
        constants: LlamaCppConstants,
        *,
        step_overhead_ms: float,
        host_time_factor: float,
        weight_bits: float,
        head_bits: float,
        quantized: bool,
    ) -> None:
        self.shape, self.settings, self.constants = shape, settings, constants
        bandwidth = hardware.bandwidth_gbyte_per_s * 1e9
        c = constants
        units = self._units = hardware.compute_units
        mmv = c.mmv_gbyte_per_s(hardware.bandwidth_gbyte_per_s, units)
        self._ms_per_mmv_byte = 1e3 / (mmv * 1e9)
        self._ms_per_dequant_byte = 1e3 / (c.dequant_bandwidth * bandwidth)
        self._ms_per_peak_byte = 1e3 / bandwidth
        self._ms_per_elementwise_byte = 1e3 / (elementwise.bandwidth * bandwidth)
        self._ms_per_f16_flop = 1e3 / (c.gemm_compute * hardware.fp16_tflops * 1e12)
        self._prompt_mmq = quantized and settings.prompt_kernels is PromptKernels.MMQ
        self._ms_per_fa_flop = 1e3 / (attention.prefill_compute * hardware.attention_tflops * 1e12)
        self._quantized = quantized
        self._bytes_per_weight = weight_bits / 8
        self._layer_parameters = shape.dense_layer_parameters + shape.active_expert_parameters
        self._head_bytes = shape.head_parameters * head_bits / 8
        self._kv_bytes_per_token = (
            shape.kv_elements_per_token(1) * settings.kv_cache_type.bytes_per_element
        )
        self._flops_per_pair = 4.0 * shape.heads * shape.head_dim * shape.layers
        self._scores_per_pair = shape.heads * shape.layers
        moe = shape.expert_parameters > 0
        mlp_width = shape.intermediate * (shape.active_experts if moe else 1)
        # F32 activations: twice the bytes of the 16-bit figure.
        self._elementwise_bytes = (
            elementwise_bytes_per_token(
                shape.hidden, shape.heads, shape.kv_heads, shape.head_dim, mlp_width, 1
            )
            * F32_BYTES
            / 2
        )
        attention_rows = shape.heads * shape.head_dim
        kv_rows = shape.kv_heads * shape.head_dim
        mlp_parameters = shape.hidden * shape.intermediate
        # (output rows, parameters) of each matrix a layer multiplies: Q, K, V, O, gate, up, down.
        self._matrices = [
            (attention_rows, shape.hidden * attention_rows),
            (kv_rows, shape.hidden * kv_rows),
            (kv_rows, shape.hidden * kv_rows),
            (shape.hidden, shape.hidden * attention_rows),
            (shape.intermediate, mlp_parameters),
            (shape.intermediate, mlp_parameters),
            (shape.hidden, mlp_parameters),
        ]
        kernels = shape.layers * KERNELS_PER_LAYER
        self._kernel_floor_ms = kernels * c.kernel_us * 1e-3
        self._host_ms = step_overhead_ms * host_time_factor
        launches = 0.0 if settings.cuda_graphs else kernels * c.launch_us * 1e-3
        self._decode_host_ms = self._host_ms + launches * host_time_factor

    # -- weights ------------------------------------------------------------------------------

    def _touched_parameters(self, tokens: float) -> float:
        """Layer weights ``tokens`` tokens read: dense ones, and the experts they route to."""
        shape = self.shape
        experts = shape.expert_parameters * shape.experts_touched_share(tokens)
        return shape.dense_layer_parameters + experts

    def _wave_share(self, tokens: float) -> float:
        """The layer GEMMs' share of the SMs' tile slots at ``tokens`` columns (time-weighted)."""
        c, units = self.constants, self._units
        slots = sum(p / c.wave_share(rows, tokens, units) for rows, p in self._matrices)
        return sum(p for _, p in self._matrices) / slots

    def _prompt_weights(self, tokens: float) -> tuple[float, float, float]:
        """(time, memory side, compute side) of one micro-batch's layer weight multiplies."""
        flops = 2.0 * self._layer_parameters * tokens / self._wave_share(tokens)
        touched = self._touched_parameters(tokens)
        if self._quantized and (tokens <= MMQ_MAX_TOKENS or self._prompt_mmq):
            memory = touched * self._bytes_per_weight * self._ms_per_mmv_byte
            compute = flops * self._ms_per_f16_flop
            return max(memory, compute), memory, compute
        # cuBLAS on F16 weights: converted first when the file is quantized.
        convert = 0.0
        if self._quantized:
            convert = touched * (self._bytes_per_weight + 2) * self._ms_per_dequant_byte
        memory = touched * 2 * self._ms_per_peak_byte
        compute = flops * self._ms_per_f16_flop
        return convert + max(memory, compute), memory + convert, compute

    def _head(self, tokens: float) -> tuple[float, float]:
        """(time, memory side) of the output matrix for ``tokens`` sampled positions."""
        memory = self._head_bytes * self._ms_per_mmv_byte
        compute = 2.0 * self.shape.head_parameters * tokens * self._ms_per_f16_flop
        return max(memory, compute), memory

    # -- attention ----------------------------------------------------------------------------

    def _prompt_attention(self, prompt: int) -> tuple[float, float]:
        """(time, compute side) of one sequence's attention over its micro-batches."""
        ubatch = self.settings.ubatch_tokens
        total = compute_total = 0.0
        done = 0
        while done < prompt:
            n = min(ubatch, prompt - done)
            kv = done + n
            if self.settings.flash_attention:
                pairs = n * done + n * (n + 1) / 2
                compute = pairs * self._flops_per_pair * self._ms_per_fa_flop
                total += compute
            else:
                padded = math.ceil(kv / KV_PAD_TOKENS) * KV_PAD_TOKENS
                compute = n * padded * self._flops_per_pair * self._ms_per_f16_flop
                scores = n * padded * self._scores_per_pair * SCORE_BYTES
                total += compute + scores * self._ms_per_elementwise_byte
            compute_total += compute
            done = kv
        return total, compute_total

    def _decode_attention(self, batch: int, context: int) -> float:
        reads = 1.0 if self.settings.flash_attention else self.shape.heads / self.shape.kv_heads
        kv_bytes = batch * max(context, 1) * self._kv_bytes_per_token * reads
        return kv_bytes * self._ms_per_mmv_byte

    # -- steps --------------------------------------------------------------------------------

    def prefill(self, batch: int, prompt_tokens: int) -> StepTime:
        """Prefill of ``batch`` prompts of ``prompt_tokens`` each (each its own sequence)."""
        prompt = max(prompt_tokens, 1)
        tokens = batch * prompt
        steps = math.ceil(tokens / self.settings.ubatch_tokens)
        per_step = tokens / steps
        weights, memory, compute = (steps * part for part in self._prompt_weights(per_step))
        head, head_memory = self._head(batch)
        attention, attention_compute = (batch * part for part in self._prompt_attention(prompt))
        elementwise = tokens * self._elementwise_bytes * self._ms_per_elementwise_byte
        elementwise += steps * self._kernel_floor_ms
        overhead = steps * self._host_ms
        return StepTime(
            total_ms=weights + head + attention + elementwise + overhead,
            weights_ms=weights + head,
            attention_ms=attention,
            elementwise_ms=elementwise,
            communication_ms=0.0,
            overhead_ms=overhead,
            memory_side_ms=memory + head_memory,
            compute_side_ms=compute + attention_compute,
        )

    def decode(self, batch: int, context_tokens: int) -> StepTime:
        """One decode step of ``batch`` sequences with ``context_tokens`` cached each."""
        weights, memory, compute = self._decode_weights(batch)
        head, head_memory = self._head(batch)
        attention = self._decode_attention(batch, context_tokens)
        elementwise = batch * self._elementwise_bytes * self._ms_per_elementwise_byte
        elementwise += self._kernel_floor_ms
        overhead = self._decode_host_ms
        return StepTime(
            total_ms=weights + head + attention + elementwise + overhead,
            weights_ms=weights + head,
            attention_ms=attention,
            elementwise_ms=elementwise,
            communication_ms=0.0,
            overhead_ms=overhead,
            memory_side_ms=memory + head_memory + attention,
            compute_side_ms=compute,
        )

    def _decode_weights(self, batch: int) -> tuple[float, float, float]:
        """Decode weights: the matrix-vector kernels stream every weight once per step."""
        memory = self._touched_parameters(batch) * self._bytes_per_weight * self._ms_per_mmv_byte
        compute = 2.0 * self._layer_parameters * batch * self._ms_per_f16_flop
        return max(memory, compute), memory, compute
