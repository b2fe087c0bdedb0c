"""A model's parameters split the way time and memory see them: dense layer weights, routed
experts, embedding and LM head, and the KV cache a token leaves behind.

Owns: deriving those splits from a ``ModelArchitectureSpec`` and the MoE expert-touch estimate.
Must not: know GPUs, engines or efficiencies.

Embeddings: the LM head (vocab x hidden) is a matrix multiply every step; the input embedding is a
gather. Whether the two are one tied matrix is read off the parameter count: what the layers do
not account for is one (tied) or two (untied) vocab x hidden matrices.

MoE: ``parametersBillion`` holds every expert, ``activeParametersBillion`` what one token uses.
With E experts of which k are routed per token, total - active = expert weights x (1 - k/E), so
expert weights = (total - active) x E / (E - k) and the rest is dense (attention, router,
embeddings). Compute uses active parameters. Weight bytes read by one step depend on the tokens
in it: with routing taken as uniform and independent, t tokens touch a share
1 - (1 - k/E)^t of each layer's experts (t = 1 gives k/E, so one token reads exactly the active
parameters; a few dozen tokens already read nearly all of them). Memory always holds all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridplace.specs.model_arch import ModelArchitectureSpec


@dataclass(frozen=True, slots=True)
class ModelShape:
    """Parameter counts (not billions: plain counts) and shape figures of one model."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    total_parameters: float
    embedding_matrices: int  # 1 when input embedding and LM head are tied, else 2
    expert_parameters: float  # all routed experts of all layers; 0 for dense models
    experts: int  # routed experts per layer (1 for dense models)
    active_experts: int
    intermediate: int  # MLP width (per expert for MoE), estimated when the spec has none

    @property
    def head_parameters(self) -> float:
        """LM head (vocab x hidden): multiplied every step, tied or not."""
        return float(self.vocab * self.hidden)

    @property
    def embedding_parameters(self) -> float:
        """Embedding tables stored in memory (one when tied)."""
        return self.head_parameters * self.embedding_matrices

    @property
    def dense_layer_parameters(self) -> float:
        """Transformer-layer weights every token uses (attention, dense MLP, router, norms)."""
        rest = self.total_parameters - self.embedding_parameters - self.expert_parameters
        return max(rest, 0.0)

    @property
    def active_expert_parameters(self) -> float:
        return self.expert_parameters * self.active_experts / self.experts

    def experts_touched_share(self, tokens: float) -> float:
        """Expected share of each layer's experts that ``tokens`` routed tokens touch."""
        if self.expert_parameters == 0.0:
            return 0.0
        miss = 1.0 - self.active_experts / self.experts
        return 1.0 - float(miss ** max(tokens, 1.0))

    def kv_elements_per_token(self, tensor_parallel: int) -> int:
        """K and V elements one token keeps per GPU (KV heads split; replicated if tp > kv)."""
        kv_heads_per_gpu = math.ceil(self.kv_heads / tensor_parallel)
        return 2 * self.layers * kv_heads_per_gpu * self.head_dim


def model_shape(model: ModelArchitectureSpec) -> ModelShape:
    """Derive the splits described in the module docstring."""
    total = model.parameters_billion * 1e9
    head = float(model.vocab_size * model.hidden_size)
    experts, active = 1, 1
    expert_parameters = 0.0
    if model.moe is not None and model.active_parameters_billion is not None:
        experts, active = model.moe.experts, model.moe.active_experts
        inactive = total - model.active_parameters_billion * 1e9
        expert_parameters = max(inactive, 0.0) * experts / (experts - active)
    attention = model.layers * (
        model.hidden_size * (model.attention_heads + 2 * model.kv_heads) * model.head_dim
        + model.attention_heads * model.head_dim * model.hidden_size
    )
    if model.intermediate_size is not None:
        intermediate = model.intermediate_size
        # Gated MLP (gate, up, down) per layer, or per expert for MoE.
        mlp = 3 * model.hidden_size * intermediate * model.layers * (experts if experts > 1 else 1)
        rest = total - attention - mlp
        matrices = 1 if rest < 1.5 * head else 2
    else:
        matrices = 2 if total - attention > 4 * head else 1
        dense_mlp = max(total - attention - matrices * head - expert_parameters, 0.0)
        intermediate = max(int(dense_mlp / (3 * model.hidden_size * model.layers)), 1)
    # Never let the embedding split eat the layers (tiny or odd inline architectures).
    if total - matrices * head - expert_parameters <= 0:
        matrices = 1
    return ModelShape(
        layers=model.layers,
        hidden=model.hidden_size,
        heads=model.attention_heads,
        kv_heads=model.kv_heads,
        head_dim=model.head_dim,
        vocab=model.vocab_size,
        total_parameters=total,
        embedding_matrices=matrices,
        expert_parameters=min(expert_parameters, total),
        experts=experts,
        active_experts=active,
        intermediate=intermediate,
    )
