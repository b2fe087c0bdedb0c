"""The agent's model manifest: for each workload, what to tell the engine and where its weights are.

Owns: the manifest file format (YAML, camelCase, unknown fields refused) and resolving a workload
to a model reference, a driver and a weights source.
Must not: fetch anything (``cache`` does) or build command lines (``drivers`` does).

Why a manifest: an assignment names the workload, not its model (the plan's inputs are the
admin's), so the node needs a local mapping. Convention when a workload has no entry: the workload
name is looked up as a catalog model id and its ``huggingFaceRepo`` is what vLLM is told (vLLM
downloads it itself); otherwise the workload name is passed through unchanged::

    workloads:
      chat-8b:
        model: meta-llama/Llama-3.1-8B-Instruct   # what the engine serves
        driver: vllm                               # optional: overrides --driver
        quantization: awq                          # optional: vLLM --quantization
        weights:                                   # optional: fetched into the cache first
          source: https://weights.example/chat-8b-q4.gguf   # or a local path
          sha256: 9f86d0...
          sizeBytes: 4920000000
        weightsByPrecision: {int4: {source: ..., sha256: ...}}   # wins over ``weights``
        warmStandby: true                          # pre-warm even before it is assigned here
        catalogModel: llama-3.1-8b                 # optional: the catalog id observations name
        metrics:                                   # optional: the command driver's metric names
          requests: [my_requests_total]            # (see ``EngineMetrics``; vllm and llama.cpp
          ttftSeconds: [my_ttft_seconds]           #  have built-in names, used when absent)
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, StringConstraints, ValidationError

from gridplace.executor.errors import ConfigError
from gridplace.specs import Engine, Precision, builtin_catalog
from gridplace.specs.common import StrictModel


class DriverKind(StrEnum):
    VLLM = "vllm"
    LLAMA_CPP = "llama.cpp"
    COMMAND = "command"


class WeightSource(StrictModel):
    """One weights file: a local path or an http(s) URL, and its sha256."""

    source: str = Field(min_length=1, max_length=4096)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = Field(default=None, ge=0, description="Known size, for eviction.")

    @property
    def file_name(self) -> str:
        tail = self.source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        return tail or "weights"


MetricNames = list[Annotated[str, StringConstraints(min_length=1, max_length=200)]]


class EngineMetrics(StrictModel):
    """Where an engine's ``/metrics`` holds what an observation window needs: for each field, the
    Prometheus metric names to read, the first one present in a scrape winning. Counters are
    differenced over the window; histograms (``*Seconds``) give latency quantiles; ``running`` is
    a gauge sampled at every scrape; ``busySlotsPerDecode`` is llama-server's running ratio of busy
    slots to decode calls (read with ``decodeSteps``)."""

    requests: MetricNames = Field(default_factory=list, max_length=8)
    prompt_tokens: MetricNames = Field(default_factory=list, max_length=8)
    output_tokens: MetricNames = Field(default_factory=list, max_length=8)
    ttft_seconds: MetricNames = Field(default_factory=list, max_length=8)
    itl_seconds: MetricNames = Field(default_factory=list, max_length=8)
    e2e_seconds: MetricNames = Field(default_factory=list, max_length=8)
    running: MetricNames = Field(default_factory=list, max_length=8)
    prefill_seconds: MetricNames = Field(default_factory=list, max_length=8)
    decode_seconds: MetricNames = Field(default_factory=list, max_length=8)
    decode_steps: MetricNames = Field(default_factory=list, max_length=8)
    busy_slots_per_decode: MetricNames = Field(default_factory=list, max_length=8)
    engine: Engine = Field(
        default=Engine.VLLM, description="The engine the command runs (what observations name)."
    )


class WorkloadEntry(StrictModel):
    model: str | None = Field(default=None, max_length=500)
    catalog_model: str | None = Field(default=None, max_length=200)
    metrics: EngineMetrics | None = None
    driver: DriverKind | None = None
    quantization: str | None = Field(default=None, max_length=64)
    weights: WeightSource | None = None
    weights_by_precision: dict[Precision, WeightSource] = Field(default_factory=dict)
    warm_standby: bool = False


class Manifest(StrictModel):
    workloads: dict[str, WorkloadEntry] = Field(default_factory=dict)

    def entry(self, workload: str) -> WorkloadEntry:
        return self.workloads.get(workload) or WorkloadEntry()

    def model_for(self, workload: str) -> str:
        """The model reference the engine is given (see the module docstring)."""
        entry = self.entry(workload)
        if entry.model:
            return entry.model
        catalog = builtin_catalog()
        model_id = catalog.model_id(workload)
        if model_id is not None:
            repo = catalog.models[model_id].hugging_face_repo
            if repo:
                return repo
        return workload

    def catalog_model_for(self, workload: str) -> str | None:
        """The catalog model id of a workload (for observations): ``catalogModel``, else the
        workload name or its engine model looked up in the catalog; None when neither is known."""
        entry = self.entry(workload)
        if entry.catalog_model:
            return entry.catalog_model
        catalog = builtin_catalog()
        return catalog.model_id(workload) or (
            catalog.model_id(entry.model) if entry.model else None
        )

    def weights_for(self, workload: str, precision: str) -> WeightSource | None:
        entry = self.entry(workload)
        by_precision = {p.value: w for p, w in entry.weights_by_precision.items()}
        return by_precision.get(precision) or entry.weights

    def warm_standby(self) -> list[WeightSource]:
        """Weights to keep cached whatever the plan says (every precision listed)."""
        out: list[WeightSource] = []
        for entry in self.workloads.values():
            if entry.warm_standby:
                out.extend(w for w in [entry.weights, *entry.weights_by_precision.values()] if w)
        return out


def load_manifest(path: Path | None) -> Manifest:
    """The manifest at ``path`` (an empty one for None); ``ConfigError`` names the bad field."""
    if path is None:
        return Manifest()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Manifest.model_validate(data)
    except OSError as error:
        raise ConfigError(f"cannot read the model manifest {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not YAML: {error}") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise ConfigError(f"{path}: {problems}") from error
