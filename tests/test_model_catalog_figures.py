"""The built-in model catalog (gridplace/specs/data/models.yaml) against published figures.

Reads the packaged YAML directly and validates it with ``ModelArchitecture`` only, so it does not
depend on the catalog loader. Checks: every document validates, the expected ids are all there,
repo names map to one id, a dozen figures match their published config.json / model card, and the
parameter count implied by each shape is close to the catalog's figure.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from importlib.resources import files

import pytest
import yaml

from gridplace.specs.model_arch import ModelArchitecture, ModelArchitectureSpec

EXPECTED_IDS = frozenset(
    {
        "llama-2-7b",
        "llama-2-13b",
        "llama-2-70b",
        "llama-3-8b",
        "llama-3-70b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.1-405b",
        "llama-3.3-70b",
        "mistral-7b",
        "mixtral-8x7b",
        "qwen2.5-7b",
        "qwen2.5-14b",
        "qwen2.5-32b",
        "qwen2.5-72b",
        "qwen3-8b",
        "qwen3-14b",
        "qwen3-32b",
        "qwen3-30b-a3b",
        "gemma-2-9b",
        "gemma-2-27b",
        "gpt-oss-20b",
        "gpt-oss-120b",
        "deepseek-r1-distill-llama-70b",
        "phi-3-mini",
    }
)

MOE_IDS = frozenset({"mixtral-8x7b", "qwen3-30b-a3b", "gpt-oss-20b", "gpt-oss-120b"})
DENSE_IDS = EXPECTED_IDS - MOE_IDS

# Models whose config.json sets tie_word_embeddings: true (one vocab x hidden matrix, not two).
TIED_EMBEDDINGS = frozenset({"gemma-2-9b", "gemma-2-27b"})

# The shape-derived estimate ignores norms and biases, so it must only land near the figure.
PARAMETER_ESTIMATE_TOLERANCE = 0.06


@cache
def _load_raw_documents() -> list[object]:
    text = files("gridplace.specs").joinpath("data/models.yaml").read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


@cache
def _load_catalog() -> dict[str, ModelArchitecture]:
    models = [ModelArchitecture.model_validate(doc) for doc in _load_raw_documents()]
    return {model.metadata.name: model for model in models}


def _spec(model_id: str) -> ModelArchitectureSpec:
    return _load_catalog()[model_id].spec


def _estimate_parameters_billion(model_id: str) -> float:
    """Total parameters from the shape: embeddings + layers * (attention + MLP), in 1e9.

    Attention is Q and O (hidden x heads*headDim each) plus K and V (hidden x kvHeads*headDim
    each); the MLP is gated (gate, up, down: 3 x hidden x intermediate), once per expert for MoE,
    where intermediateSize is the per-expert size. Norms, biases and routers are left out.
    """
    spec = _spec(model_id)
    query_width = spec.attention_heads * spec.head_dim
    kv_width = spec.kv_heads * spec.head_dim
    attention = 2 * spec.hidden_size * query_width + 2 * spec.hidden_size * kv_width
    assert spec.intermediate_size is not None, f"{model_id}: intermediateSize is needed"
    mlp = 3 * spec.hidden_size * spec.intermediate_size
    if spec.moe is not None:
        mlp *= spec.moe.experts
    embedding_matrices = 1 if model_id in TIED_EMBEDDINGS else 2
    embeddings = embedding_matrices * spec.vocab_size * spec.hidden_size
    return (embeddings + spec.layers * (attention + mlp)) / 1e9


def test_every_document_is_a_valid_model_architecture() -> None:
    documents = _load_raw_documents()
    assert len(documents) == len(EXPECTED_IDS)
    for document in documents:
        ModelArchitecture.model_validate(document)


def test_catalog_has_exactly_the_expected_ids() -> None:
    catalog = _load_catalog()
    assert set(catalog) == EXPECTED_IDS
    assert len(_load_raw_documents()) == len(catalog), "an id appears twice"


def test_every_entry_names_its_sources_and_repo() -> None:
    for model_id, model in _load_catalog().items():
        assert model.spec.sources, f"{model_id} has no sources"
        assert model.spec.hugging_face_repo, f"{model_id} has no huggingFaceRepo"


def test_repo_names_and_aliases_map_to_one_id() -> None:
    # Case-insensitive: Hugging Face repo names are.
    names = Counter(
        name.lower()
        for model in _load_catalog().values()
        for name in [model.spec.hugging_face_repo, *model.spec.aliases]
        if name is not None
    )
    duplicates = sorted(name for name, count in names.items() if count > 1)
    assert duplicates == []


def test_moe_entries_are_exactly_the_moe_models() -> None:
    # The schema already ties moe to activeParametersBillion; this pins which models are MoE.
    moe_ids = {model_id for model_id, model in _load_catalog().items() if model.spec.moe}
    assert moe_ids == MOE_IDS


PUBLISHED_FIGURES = [
    # config.json of meta-llama/Llama-3.1-70B: num_hidden_layers 80, num_key_value_heads 8,
    # hidden_size 8192.
    pytest.param(
        "llama-3.1-70b",
        {"layers": 80, "kv_heads": 8, "hidden_size": 8192},
        id="llama-3.1-70b-shape",
    ),
    # config.json of meta-llama/Llama-3.1-405B: 126 layers, hidden 16384, 128 heads, 8 KV heads.
    pytest.param(
        "llama-3.1-405b",
        {"layers": 126, "hidden_size": 16384, "attention_heads": 128, "kv_heads": 8},
        id="llama-3.1-405b-shape",
    ),
    # config.json of meta-llama/Llama-2-7b-hf: MHA (32 KV heads), 4096-token context.
    pytest.param(
        "llama-2-7b",
        {"kv_heads": 32, "attention_heads": 32, "max_context_tokens": 4096, "vocab_size": 32000},
        id="llama-2-7b-mha",
    ),
    # config.json of meta-llama/Meta-Llama-3-8B: 128256-token vocab, 8192 positions.
    pytest.param(
        "llama-3-8b",
        {"vocab_size": 128256, "max_context_tokens": 8192, "intermediate_size": 14336},
        id="llama-3-8b-vocab-context",
    ),
    # Mixtral announcement (mistral.ai, Dec 2023): 46.7B total, 12.9B per token; config.json of
    # mistralai/Mixtral-8x7B-v0.1: num_local_experts 8, num_experts_per_tok 2.
    pytest.param(
        "mixtral-8x7b",
        {
            "parameters_billion": 46.7,
            "active_parameters_billion": 12.9,
            "moe.experts": 8,
            "moe.active_experts": 2,
        },
        id="mixtral-8x7b-moe",
    ),
    # config.json of Qwen/Qwen2.5-72B: vocab_size 152064, intermediate_size 29568.
    pytest.param(
        "qwen2.5-72b",
        {"vocab_size": 152064, "intermediate_size": 29568, "layers": 80},
        id="qwen2.5-72b-vocab",
    ),
    # config.json of Qwen/Qwen3-32B: head_dim 128 with 64 heads although hidden_size is 5120.
    pytest.param(
        "qwen3-32b",
        {"head_dim": 128, "attention_heads": 64, "hidden_size": 5120, "vocab_size": 151936},
        id="qwen3-32b-head-dim",
    ),
    # config.json of Qwen/Qwen3-30B-A3B: 128 experts, 8 per token, moe_intermediate_size 768,
    # 4 KV heads; model card: 30.5B total, 3.3B activated.
    pytest.param(
        "qwen3-30b-a3b",
        {
            "moe.experts": 128,
            "moe.active_experts": 8,
            "intermediate_size": 768,
            "kv_heads": 4,
            "parameters_billion": 30.5,
            "active_parameters_billion": 3.3,
        },
        id="qwen3-30b-a3b-moe",
    ),
    # config.json of google/gemma-2-9b: head_dim 256, 16 heads, 8 KV heads, hidden 3584.
    pytest.param(
        "gemma-2-9b",
        {"head_dim": 256, "attention_heads": 16, "kv_heads": 8, "hidden_size": 3584},
        id="gemma-2-9b-head-dim",
    ),
    # config.json of google/gemma-2-27b: head_dim 128, 32 heads, 16 KV heads, hidden 4608.
    pytest.param(
        "gemma-2-27b",
        {"head_dim": 128, "attention_heads": 32, "kv_heads": 16, "hidden_size": 4608},
        id="gemma-2-27b-shape",
    ),
    # config.json of openai/gpt-oss-120b: 36 layers, hidden 2880, 64 heads of 64, 8 KV heads,
    # vocab 201088, 128 experts / 4 per token; model card (arXiv:2508.10925): 116.83B / 5.13B.
    pytest.param(
        "gpt-oss-120b",
        {
            "layers": 36,
            "hidden_size": 2880,
            "attention_heads": 64,
            "kv_heads": 8,
            "head_dim": 64,
            "vocab_size": 201088,
            "moe.experts": 128,
            "moe.active_experts": 4,
            "parameters_billion": 116.83,
            "active_parameters_billion": 5.13,
        },
        id="gpt-oss-120b-shape",
    ),
    # config.json of openai/gpt-oss-20b: 24 layers, 32 experts / 4 per token, 131072 positions.
    pytest.param(
        "gpt-oss-20b",
        {"layers": 24, "moe.experts": 32, "moe.active_experts": 4, "max_context_tokens": 131072},
        id="gpt-oss-20b-shape",
    ),
    # config.json of microsoft/Phi-3-mini-4k-instruct: MHA 32/32, hidden 3072 (head_dim 96),
    # vocab 32064, 4096 positions.
    pytest.param(
        "phi-3-mini",
        {
            "attention_heads": 32,
            "kv_heads": 32,
            "head_dim": 96,
            "vocab_size": 32064,
            "max_context_tokens": 4096,
        },
        id="phi-3-mini-mha",
    ),
    # config.json of mistralai/Mistral-7B-v0.1: vocab 32000 (v0.3 would be 32768), 8 KV heads.
    pytest.param(
        "mistral-7b",
        {"vocab_size": 32000, "kv_heads": 8, "max_context_tokens": 32768},
        id="mistral-7b-v0.1",
    ),
]


def _field(spec: ModelArchitectureSpec, dotted_name: str) -> object:
    value: object = spec
    for part in dotted_name.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("model_id", "expected"), PUBLISHED_FIGURES)
def test_published_figures(model_id: str, expected: dict[str, float]) -> None:
    spec = _spec(model_id)
    actual = {name: _field(spec, name) for name in expected}
    assert actual == expected


@pytest.mark.parametrize("model_id", sorted(DENSE_IDS))
def test_dense_parameter_count_matches_shape(model_id: str) -> None:
    catalog_figure = _spec(model_id).parameters_billion
    estimate = _estimate_parameters_billion(model_id)
    assert estimate == pytest.approx(catalog_figure, rel=PARAMETER_ESTIMATE_TOLERANCE), (
        f"{model_id}: shape gives {estimate:.2f}B, catalog says {catalog_figure}B"
    )


@pytest.mark.parametrize("model_id", sorted(MOE_IDS))
def test_moe_total_parameter_count_matches_shape(model_id: str) -> None:
    # Only the total is checked: vendors count "active" parameters differently (gpt-oss leaves
    # the input embedding out, Mixtral keeps it in), so an estimate of it would need per-vendor
    # rules.
    catalog_figure = _spec(model_id).parameters_billion
    estimate = _estimate_parameters_billion(model_id)
    assert estimate == pytest.approx(catalog_figure, rel=PARAMETER_ESTIMATE_TOLERANCE), (
        f"{model_id}: shape gives {estimate:.2f}B, catalog says {catalog_figure}B"
    )
