"""VRAM of one GPU of a replica: its weight shard, the KV cache of the sequences it holds, and
what the engine keeps for itself.

Owns: these sizes. Must not: time anything.

- weights: layer weights at the engine's format for the precision plus the embedding table(s) at
  their own width (``engines.head_bits``), split evenly over the tensor-parallel GPUs (vLLM,
  SGLang and TensorRT-LLM shard the vocabulary as well).
- KV cache: 2 (K and V) x layers x KV heads on this GPU x head_dim x bytes per element per token
  (16-bit by default, fp8 optional); KV heads are split over the GPUs and replicated when there
  are fewer of them than GPUs.
- engine reserve: the runtime (CUDA/HIP context, graphs, communicator buffers), the activation
  workspace of one step of ``activation_tokens`` tokens (hidden state, QKV, gated MLP input, in
  16 bits, plus fp32 logits for 256 sampled sequences), and the share of VRAM the engine leaves
  untouched (vLLM's ``gpu_memory_utilization`` 0.9 convention; see ``engines``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridplace.planner.perfmodel.engines import GIB, EngineTraits
from gridplace.planner.perfmodel.shape import ModelShape

SAMPLED_SEQUENCES = 256  # logits rows the workspace holds (vLLM's default max_num_seqs)


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Per-GPU memory figures of one replica configuration, GiB unless named otherwise."""

    memory_gib: float
    weights_gib: float
    reserve_gib: float
    kv_bytes_per_token: float

    def kv_cache_gib(self, sequences: int, tokens_per_sequence: int) -> float:
        return sequences * tokens_per_sequence * self.kv_bytes_per_token / GIB

    def vram_gib(self, sequences: int, tokens_per_sequence: int) -> float:
        """Weights + KV cache + engine reserve for ``sequences`` of ``tokens_per_sequence``."""
        kv = self.kv_cache_gib(sequences, tokens_per_sequence)
        return self.weights_gib + kv + self.reserve_gib

    @property
    def kv_budget_gib(self) -> float:
        """What is left for KV cache (negative when weights and reserve alone do not fit)."""
        return self.memory_gib - self.weights_gib - self.reserve_gib

    def max_sequences(self, tokens_per_sequence: int) -> int:
        """Most sequences of ``tokens_per_sequence`` whose KV cache fits (0 if none)."""
        per_sequence = tokens_per_sequence * self.kv_bytes_per_token / GIB
        if self.kv_budget_gib <= 0 or per_sequence <= 0:
            return 0
        return math.floor(self.kv_budget_gib / per_sequence)


def memory_plan(
    shape: ModelShape,
    memory_gib: float,
    tensor_parallel: int,
    engine: EngineTraits,
    *,
    weight_bits: float,
    head_bits: float,
    kv_bytes_per_element: float,
) -> MemoryPlan:
    """Per-GPU memory plan (see module docstring)."""
    t = tensor_parallel
    layer_parameters = shape.dense_layer_parameters + shape.expert_parameters
    weights_bytes = (layer_parameters * weight_bits + shape.embedding_parameters * head_bits) / 8
    weights_gib = weights_bytes / t / GIB
    moe = shape.expert_parameters > 0
    mlp_width = shape.intermediate * (shape.active_experts if moe else 1)
    qkv = (shape.heads + 2 * shape.kv_heads) * shape.head_dim
    activation_elements = 4 * shape.hidden + qkv / t + 2 * mlp_width / t
    activation_bytes = engine.activation_tokens * activation_elements * 2
    logits_bytes = SAMPLED_SEQUENCES * shape.vocab / t * 4
    activation_gib = (activation_bytes + logits_bytes) / GIB
    used = engine.runtime_reserve_gib + activation_gib
    if engine.utilization_of_free:
        headroom = (1 - engine.memory_utilization) * max(memory_gib - weights_gib - used, 0.0)
    else:
        headroom = (1 - engine.memory_utilization) * memory_gib
    return MemoryPlan(
        memory_gib=memory_gib,
        weights_gib=weights_gib,
        reserve_gib=used + headroom,
        kv_bytes_per_token=shape.kv_elements_per_token(t) * kv_bytes_per_element,
    )
