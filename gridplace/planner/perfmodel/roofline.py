"""Time of one forward step on one GPU of a replica: a roofline per kernel family with fitted
efficiencies, plus tensor-parallel all-reduces and the engine's per-step overhead.

Owns: the step-time formulas (decode step = ITL, prefill = TTFT without network or queueing).
Must not: decide support, size memory, or read tables (it is handed its efficiencies).

A step over m tokens (decode: m = batch; prefill: m = batch x prompt, cut into chunks of the
engine's step size) costs, per GPU of a tensor-parallel group of t:

    weights       per group (dense layers, routed experts, LM head), with M = bytes / (eta_bw BW)
                  and C = flops / (eta_c FLOPS): max(M, C) + overlap x min(M, C) + kernels x k_us
                  bytes = weights read (experts: the share the step's tokens touch) / t
                  flops = 2 x parameters used per token x m / t (the LM head only for the sampled
                  token of each sequence)
    attention     decode: KV bytes (batch x context x KV bytes per token / t) / (eta_kv BW)
                          + layers x (k_us + batch x seq_us)
                  prefill: 4 x heads/t x head_dim x layers x causal pairs / (eta_a FLOPS16)
                           x (1 + n_half / prompt) + layers x k_us
    elementwise   layers x (k_us + m x bytes per token / (eta_e BW))
    all-reduce    2 per layer of m x hidden x 2 bytes over the node's link (t > 1)
    overhead      the engine's host time per step (+ per running sequence of a decode step)
    eager         without CUDA graphs the host launches every op (ops per layer x layers x
                  eager_op_us); the GPU part of the step then takes max(GPU time, launch time)
    host factor   every host term (overhead, launches) x ``host_time_factor``: a slower host CPU
                  makes them longer (1.0: the host the engine priors were measured on)

``bound`` compares the memory side (weights and KV read) with the compute side (weight and
attention flops) of the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gridplace.planner.perfmodel.efficiency import (
    AttentionEfficiency,
    ElementwiseEfficiency,
    GemmEfficiency,
)
from gridplace.planner.perfmodel.engines import EngineTraits
from gridplace.planner.perfmodel.hardware import Link
from gridplace.planner.perfmodel.shape import ModelShape

Bound = Literal["memory", "compute"]
ACTIVATION_BYTES = 2  # activations and all-reduce payloads travel in 16 bits
GEMMS_PER_DENSE_LAYER = 4  # QKV, O, gate+up, down
GEMMS_PER_MOE_LAYER = 5  # QKV, O, router, fused experts up, fused experts down
# Ops one layer launches: norm, QKV, RoPE, KV-cache write, attention, O, add+norm, gate_up,
# activation, down (+ router, top-k for MoE; + 2 all-reduces under tensor parallel).
OPS_PER_DENSE_LAYER = 10
OPS_PER_MOE_LAYER = 12


def elementwise_bytes_per_token(
    hidden: int, heads: int, kv_heads: int, head_dim: int, mlp_width: int, tensor_parallel: int
) -> float:
    """Bytes the per-layer elementwise kernels move for one token (calibration uses it too).

    Two RMSNorms and two residual adds over the hidden state (8 x hidden reads+writes), RoPE over
    Q and K (read+write), the gated activation (reads gate and up, writes one).
    """
    t = tensor_parallel
    elements = 8 * hidden + 2 * (heads + kv_heads) * head_dim / t + 3 * mlp_width / t
    return elements * ACTIVATION_BYTES


@dataclass(frozen=True, slots=True)
class StepTime:
    """One step's time and where it goes, ms (per GPU; all GPUs of the group work in parallel)."""

    total_ms: float
    weights_ms: float  # weight multiplies incl. kernel constants
    attention_ms: float
    elementwise_ms: float
    communication_ms: float
    overhead_ms: float
    memory_side_ms: float  # weights + KV bytes at their bandwidth efficiency
    compute_side_ms: float  # weight + attention flops at their compute efficiency

    @property
    def bound(self) -> Bound:
        return "compute" if self.compute_side_ms > self.memory_side_ms else "memory"

    def scaled(self, factor: float) -> StepTime:
        """The same breakdown with every part multiplied (a profile's refit)."""
        return StepTime(
            *(
                value * factor
                for value in (
                    self.total_ms,
                    self.weights_ms,
                    self.attention_ms,
                    self.elementwise_ms,
                    self.communication_ms,
                    self.overhead_ms,
                    self.memory_side_ms,
                    self.compute_side_ms,
                )
            )
        )


@dataclass(frozen=True, slots=True)
class Hardware:
    """Sustained figures of one GPU after overrides and thermal derate."""

    bandwidth_gbyte_per_s: float
    matmul_tflops: float  # at the weights' compute precision
    attention_tflops: float  # 16-bit


class Roofline:
    """Step times for one (model, GPU, precision, engine, tp, derate); built once, queried often."""

    def __init__(
        self,
        shape: ModelShape,
        tensor_parallel: int,
        hardware: Hardware,
        gemm: GemmEfficiency,
        attention: AttentionEfficiency,
        elementwise: ElementwiseEfficiency,
        engine: EngineTraits,
        link: Link,
        *,
        eager: bool = False,
        host_time_factor: float = 1.0,
        weight_bits: float,
        head_bits: float,
        kv_bytes_per_element: float,
    ) -> None:
        t = tensor_parallel
        self.shape = shape
        self.tensor_parallel = t
        self.engine = engine
        self.link = link
        self._gemm = gemm
        self._attention = attention
        self._elementwise = elementwise
        bandwidth = hardware.bandwidth_gbyte_per_s * 1e9  # bytes/s
        # Milliseconds per byte / per flop at each kernel family's efficiency.
        self._ms_per_weight_byte = 1e3 / (gemm.bandwidth * bandwidth)
        self._ms_per_weight_flop = 1e3 / (gemm.compute * hardware.matmul_tflops * 1e12)
        prefill_compute = gemm.compute_large or gemm.compute
        self._ms_per_prefill_flop = 1e3 / (prefill_compute * hardware.matmul_tflops * 1e12)
        self._ms_per_kv_byte = 1e3 / (attention.decode_bandwidth * bandwidth)
        self._ms_per_attention_flop = 1e3 / (
            attention.prefill_compute * hardware.attention_tflops * 1e12
        )
        self._ms_per_elementwise_byte = 1e3 / (elementwise.bandwidth * bandwidth)
        # Per-GPU weights and flops per token.
        self._dense_bytes = shape.dense_layer_parameters * weight_bits / 8 / t
        self._expert_bytes = shape.expert_parameters * weight_bits / 8 / t
        self._head_bytes = shape.head_parameters * head_bits / 8 / t
        self._dense_flops = 2 * shape.dense_layer_parameters / t
        self._expert_flops = 2 * shape.active_expert_parameters / t
        self._head_flops = 2 * shape.head_parameters / t
        moe = shape.expert_parameters > 0
        per_layer = GEMMS_PER_MOE_LAYER if moe else GEMMS_PER_DENSE_LAYER
        self._gemm_kernels = shape.layers * per_layer + 1
        self._kv_bytes_per_token = shape.kv_elements_per_token(t) * kv_bytes_per_element
        heads_per_gpu = math.ceil(shape.heads / t)
        self._attention_flops_per_pair = 4.0 * heads_per_gpu * shape.head_dim * shape.layers
        mlp_width = shape.intermediate * (shape.active_experts if moe else 1)
        self._elementwise_bytes = elementwise_bytes_per_token(
            shape.hidden, shape.heads, shape.kv_heads, shape.head_dim, mlp_width, t
        )
        self._allreduce_bytes_per_token = shape.hidden * ACTIVATION_BYTES
        ops = (OPS_PER_MOE_LAYER if moe else OPS_PER_DENSE_LAYER) + (2 if t > 1 else 0)
        self._host = host_time_factor
        launch_ms = shape.layers * ops * engine.eager_op_us * 1e-3 * host_time_factor
        self._launch_ms = launch_ms if eager else 0.0

    # -- parts ----------------------------------------------------------------------------

    def _gemm_time(self, memory: float, compute: float) -> float:
        return max(memory, compute) + self._gemm.overlap * min(memory, compute)

    def _layer_weights(self, tokens: float, prefill: bool = False) -> tuple[float, float, float]:
        """(time, memory side, compute side) of the layers' weight multiplies over ``tokens``."""
        ms_per_flop = self._ms_per_prefill_flop if prefill else self._ms_per_weight_flop
        memory = self._dense_bytes * self._ms_per_weight_byte
        compute = tokens * self._dense_flops * ms_per_flop
        time, memory_total, compute_total = self._gemm_time(memory, compute), memory, compute
        if self._expert_bytes > 0:
            touched = self.shape.experts_touched_share(tokens)
            memory = self._expert_bytes * touched * self._ms_per_weight_byte
            compute = tokens * self._expert_flops * ms_per_flop
            time += self._gemm_time(memory, compute)
            memory_total += memory
            compute_total += compute
        return time, memory_total, compute_total

    def _head_weights(self, tokens: float) -> tuple[float, float, float]:
        """(time, memory side, compute side) of the LM head over ``tokens`` sampled positions."""
        memory = self._head_bytes * self._ms_per_weight_byte
        compute = tokens * self._head_flops * self._ms_per_weight_flop
        return self._gemm_time(memory, compute), memory, compute

    def _elementwise_ms(self, tokens: float, steps: int) -> float:
        per_layer = self._elementwise.layer_us * 1e-3 * steps
        moved = tokens * self._elementwise_bytes * self._ms_per_elementwise_byte
        return self.shape.layers * (per_layer + moved)

    def _communication_ms(self, tokens_per_step: float, steps: int) -> float:
        if self.tensor_parallel == 1:
            return 0.0
        message = tokens_per_step * self._allreduce_bytes_per_token
        per_step = 2 * self.shape.layers * self.link.allreduce_ms(message, self.tensor_parallel)
        return per_step * steps

    # -- steps ----------------------------------------------------------------------------

    def decode(self, batch: int, context_tokens: int) -> StepTime:
        """One decode step: ``batch`` sequences each with ``context_tokens`` already cached."""
        layers = self._layer_weights(batch)
        head = self._head_weights(batch)
        weights = layers[0] + head[0] + self._gemm_kernels * self._gemm.kernel_us * 1e-3
        kv_bytes = batch * max(context_tokens, 1) * self._kv_bytes_per_token
        kv_memory = kv_bytes * self._ms_per_kv_byte
        kv_pairs = batch * context_tokens
        kv_compute = kv_pairs * self._attention_flops_per_pair * self._ms_per_attention_flop
        attention_kernels_us = self.shape.layers * (
            self._attention.decode_kernel_us + batch * self._attention.decode_sequence_us
        )
        attention = max(kv_memory, kv_compute) + attention_kernels_us * 1e-3
        elementwise = self._elementwise_ms(batch, 1)
        communication = self._communication_ms(batch, 1)
        gpu = weights + attention + elementwise + communication
        host_ms = self.engine.step_overhead_ms + batch * self.engine.sequence_overhead_us * 1e-3
        overhead = host_ms * self._host + max(self._launch_ms - gpu, 0.0)
        return StepTime(
            total_ms=gpu + overhead,
            weights_ms=weights,
            attention_ms=attention,
            elementwise_ms=elementwise,
            communication_ms=communication,
            overhead_ms=overhead,
            memory_side_ms=layers[1] + head[1] + kv_memory,
            compute_side_ms=layers[2] + head[2] + kv_compute,
        )

    def prefill(self, batch: int, prompt_tokens: int) -> StepTime:
        """Prefill of ``batch`` prompts of ``prompt_tokens`` each, up to the first token."""
        prompt = max(prompt_tokens, 1)
        tokens = batch * prompt
        steps = math.ceil(tokens / self.engine.prefill_chunk_tokens)
        per_step = tokens / steps
        # Weights are read once per chunk; the LM head runs for each sequence's last token only.
        layers = self._layer_weights(per_step, prefill=True)
        head = self._head_weights(batch)
        kernels_ms = steps * self._gemm_kernels * self._gemm.kernel_us * 1e-3
        weights = steps * layers[0] + head[0] + kernels_ms
        pairs = batch * prompt * (prompt + 1) / 2
        ramp = 1.0 + self._attention.prefill_half_tokens / prompt
        attention_compute = (
            pairs * self._attention_flops_per_pair * self._ms_per_attention_flop * ramp
        )
        attention_kernels_ms = self.shape.layers * self._attention.prefill_kernel_us * 1e-3 * steps
        attention = attention_compute + attention_kernels_ms
        elementwise = self._elementwise_ms(tokens, steps)
        communication = self._communication_ms(per_step, steps)
        gpu = weights + attention + elementwise + communication
        # Launch-bound steps: each chunk's launches hide behind its GPU time or not.
        launch_excess = max(self._launch_ms - gpu / steps, 0.0) * steps
        overhead = self.engine.step_overhead_ms * self._host * steps + launch_excess
        return StepTime(
            total_ms=gpu + overhead,
            weights_ms=weights,
            attention_ms=attention,
            elementwise_ms=elementwise,
            communication_ms=communication,
            overhead_ms=overhead,
            memory_side_ms=steps * layers[1] + head[1],
            compute_side_ms=steps * layers[2] + head[2] + attention_compute,
        )
