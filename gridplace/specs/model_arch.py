"""The ``ModelArchitecture`` kind: a transformer's shape, enough to size and time it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gridplace.specs.common import API_VERSION, Metadata, ShortText, StrictModel


class MixtureOfExperts(StrictModel):
    """Expert counts of an MoE model."""

    experts: int = Field(ge=2, le=1024, description="Routed experts per MoE layer.")
    active_experts: int = Field(ge=1, le=64, description="Experts each token is routed to.")

    @model_validator(mode="after")
    def _active_within_total(self) -> MixtureOfExperts:
        if self.active_experts > self.experts:
            raise ValueError(
                f"activeExperts ({self.active_experts}) must be <= experts ({self.experts})"
            )
        return self


class ModelArchitectureSpec(StrictModel):
    """Shape of a decoder-only transformer, from its published config."""

    hugging_face_repo: ShortText | None = Field(
        default=None, description="Canonical Hugging Face repo, e.g. meta-llama/Llama-3.1-8B."
    )
    aliases: list[ShortText] = Field(
        default_factory=list, max_length=16, description="Other names it is known by."
    )
    parameters_billion: float = Field(gt=0, le=10_000, description="Total parameters, 1e9.")
    active_parameters_billion: float | None = Field(
        default=None, gt=0, le=10_000, description="Parameters used per token (MoE), 1e9."
    )
    layers: int = Field(ge=1, le=1024)
    hidden_size: int = Field(ge=64, le=65536)
    intermediate_size: int | None = Field(default=None, ge=64, le=262144)
    attention_heads: int = Field(ge=1, le=1024)
    kv_heads: int = Field(ge=1, le=1024, description="Key/value heads (GQA); = heads for MHA.")
    head_dim: int = Field(ge=16, le=1024)
    vocab_size: int = Field(ge=256, le=2_000_000)
    max_context_tokens: int = Field(ge=128, le=10_000_000)
    moe: MixtureOfExperts | None = Field(default=None, description="Set for MoE models.")
    sources: list[ShortText] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _consistent_shape(self) -> ModelArchitectureSpec:
        if self.kv_heads > self.attention_heads:
            raise ValueError(
                f"kvHeads ({self.kv_heads}) must be <= attentionHeads ({self.attention_heads})"
            )
        if self.attention_heads % self.kv_heads != 0:
            raise ValueError(
                f"attentionHeads ({self.attention_heads}) must be a multiple of "
                f"kvHeads ({self.kv_heads})"
            )
        active = self.active_parameters_billion
        if active is not None and active > self.parameters_billion:
            raise ValueError(
                f"activeParametersBillion ({active}) must be <= parametersBillion "
                f"({self.parameters_billion})"
            )
        if (self.moe is None) != (active is None):
            raise ValueError("moe and activeParametersBillion must be given together (MoE models)")
        return self

    @property
    def compute_parameters_billion(self) -> float:
        """Parameters touched per token: active ones for MoE, all of them otherwise."""
        return self.active_parameters_billion or self.parameters_billion


class ModelArchitecture(StrictModel):
    """A ``ModelArchitecture`` document: adds or overrides a model catalog entry."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["ModelArchitecture"] = "ModelArchitecture"
    metadata: Metadata
    spec: ModelArchitectureSpec
