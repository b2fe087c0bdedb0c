"""``gridplace predict``: one performance-model prediction, or many from a JSONL file.

Owns: turning flags or JSONL lines into ``Predictor`` queries and printing the answers.
Must not: compute anything itself (``gridplace.planner.perfmodel`` does).

Output keys (camelCase): ``ttftMs`` (prefill of ``prompt`` tokens x ``batch``, no network, no
queueing), ``itlMs`` (one decode step of ``batch`` at ``context`` tokens), ``capacityRps``
(requests/s one replica sustains inside the SLO), ``vramGiB`` (per GPU), ``fits``, ``bound``,
plus ``weightsGiB``, ``kvCacheGiB``, ``reserveGiB``, ``memoryGiB``, ``maxBatch``,
``capacityBatch``, ``capacityLimitedBy``, ``supported``, ``reason`` and ``source``.

Capacity uses the SLO ``--ttft-slo`` (default 1000 ms) / ``--itl-slo`` (default 100 ms) and
requests of ``--prompt`` tokens in and ``--output`` tokens out (default 256): the interactive-chat
defaults of public serving benchmarks; pass the workload's own figures for planning questions.

``--input FILE`` reads one JSON object per line with the flags' names in camelCase (gpu, model,
precision, engine, tp, batch, prompt, context, output, ttftSlo, itlSlo, derate, interconnect,
kvCacheFp8, eager, generation, hostFactor); flags given on the command line are the defaults for
every line. Each line gets one output line (with ``line``, its 1-based number); a line that cannot
be read or names an unknown id gets ``error`` instead, and the command exits 1 after the last
line. Predictors are cached per configuration, so 10,000 lines take about a second.

``--generation vllm-2023`` predicts an older engine release (``perfmodel/generations.py``) and
``--host-factor`` scales the engine's host time for a slower or faster host CPU. Engine options
(``--flash-attn/--no-flash-attn``, ``--ubatch``, ``--kv-cache-type``, ``--prompt-kernels``,
``--backend``; JSONL: flashAttention, ubatch, kvCacheType, promptKernels, backend) override
the generation's defaults.

``--profile PROFILE.yaml`` (from ``gridplace calibrate``) refits the matching configuration to
its measurements (``source`` says ``profile`` or ``measured``).

Exit codes: 0 success; 1 unknown id, unsupported, does not fit, or (with --input) any invalid line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
import yaml
from pydantic import Field, ValidationError

from gridplace.api import render
from gridplace.api.commands.calibrate import read_limited
from gridplace.planner.perfmodel import InvalidQuery, Prediction, Predictor, ProfileBook
from gridplace.planner.perfmodel.calibration import CalibrationError
from gridplace.planner.perfmodel.errors import PerfModelError
from gridplace.planner.perfmodel.generations import GENERATIONS
from gridplace.specs import SpecError, builtin_catalog
from gridplace.specs.catalog import Catalog, unknown_message
from gridplace.specs.common import (
    Backend,
    Engine,
    EngineOptions,
    Interconnect,
    KvCacheType,
    Precision,
    PromptKernels,
    StrictModel,
)
from gridplace.specs.profile import PerformanceProfile

EXIT_OK = 0
EXIT_INVALID = 1
DEFAULT_TTFT_SLO_MS = 1000.0
DEFAULT_ITL_SLO_MS = 100.0
DEFAULT_OUTPUT_TOKENS = 256


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


class PredictQuery(StrictModel):
    """One query: the flags of ``gridplace predict`` (camelCase in JSONL)."""

    gpu: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=200)
    precision: Precision
    engine: Engine = Engine.VLLM
    tp: int = Field(default=1, ge=1, le=64)
    batch: int = Field(default=1, ge=1, le=65536)
    prompt: int = Field(default=512, ge=1, le=10_000_000)
    context: int | None = Field(default=None, ge=0, le=10_000_000)
    output: int = Field(default=DEFAULT_OUTPUT_TOKENS, ge=1, le=1_000_000)
    ttft_slo: float = Field(default=DEFAULT_TTFT_SLO_MS, gt=0)
    itl_slo: float = Field(default=DEFAULT_ITL_SLO_MS, gt=0)
    derate: float = Field(default=0.0, ge=0, le=1)
    interconnect: Interconnect | None = None
    kv_cache_fp8: bool = False
    eager: bool = False
    generation: str | None = Field(default=None, min_length=1, max_length=100)
    host_factor: float = Field(default=1.0, ge=0.1, le=10.0)
    flash_attention: bool | None = None
    ubatch: int | None = Field(default=None, ge=1, le=65536)
    kv_cache_type: KvCacheType | None = None
    prompt_kernels: PromptKernels | None = None
    backend: Backend | None = None

    def engine_options(self) -> EngineOptions | None:
        """The engine options the query sets (None when it sets none)."""
        options = EngineOptions(
            flash_attention=self.flash_attention,
            ubatch_tokens=self.ubatch,
            kv_cache_type=self.kv_cache_type,
            prompt_kernels=self.prompt_kernels,
            backend=self.backend,
        )
        return None if options == EngineOptions() else options


# The JSONL keys of --input, as --help lists them (required ones first).
INPUT_KEYS = ", ".join(
    (field.alias or name) + ("" if field.is_required() else "?")
    for name, field in PredictQuery.model_fields.items()
)


@dataclass(frozen=True)
class _Slo:
    ttft_ms: float
    itl_ms: float


@dataclass(frozen=True)
class _Traffic:
    prompt_tokens: int
    output_tokens: int


class UnknownReference(ValueError):
    """A GPU or model id the catalog does not know (message lists near matches)."""


class QueryRunner:
    """Answers queries, caching catalog lookups and one Predictor per configuration."""

    def __init__(self, catalog: Catalog, profiles: ProfileBook | None = None) -> None:
        self.catalog = catalog
        self.profiles = profiles
        self._gpu_ids: dict[str, str] = {}
        self._model_ids: dict[str, str] = {}
        self._predictors: dict[tuple[object, ...], Predictor] = {}
        self._capacities: dict[tuple[object, ...], tuple[float, int, str]] = {}

    def _gpu_id(self, reference: str) -> str:
        found = self._gpu_ids.get(reference) or self.catalog.gpu_id(reference)
        if found is None:
            near = self.catalog.gpu_near_matches(reference)
            raise UnknownReference(unknown_message("GPU", reference, near))
        self._gpu_ids[reference] = found
        return found

    def _model_id(self, reference: str) -> str:
        found = self._model_ids.get(reference) or self.catalog.model_id(reference)
        if found is None:
            near = self.catalog.model_near_matches(reference)
            raise UnknownReference(unknown_message("model", reference, near))
        self._model_ids[reference] = found
        return found

    def answer(self, query: PredictQuery) -> tuple[dict[str, Any], bool]:
        """(output record, whether it can run: supported and fits)."""
        gpu_id, model_id = self._gpu_id(query.gpu), self._model_id(query.model)
        key = (
            gpu_id,
            model_id,
            query.precision,
            query.engine,
            query.tp,
            query.derate,
            query.interconnect,
            query.kv_cache_fp8,
            query.eager,
            query.generation,
            query.host_factor,
            query.engine_options(),
        )
        predictor = self._predictors.get(key)
        if predictor is None:
            predictor = Predictor(
                self.catalog.models[model_id],
                self.catalog.gpus[gpu_id],
                query.precision,
                query.engine,
                query.tp,
                query.derate,
                query.interconnect,
                kv_cache_fp8=query.kv_cache_fp8,
                eager=query.eager,
                generation=query.generation,
                host_time_factor=query.host_factor,
                engine_options=query.engine_options(),
                profiles=self.profiles,
                model_id=model_id,
                gpu_id=gpu_id,
            )
            self._predictors[key] = predictor
        context = query.prompt if query.context is None else query.context
        record: dict[str, Any] = {
            "gpu": gpu_id,
            "model": model_id,
            "precision": query.precision.value,
            "engine": query.engine.value,
            "tp": query.tp,
            "batch": query.batch,
            "prompt": query.prompt,
            "context": context,
        }
        result = predictor.predict(query.batch, query.prompt, context)
        if not isinstance(result, Prediction):
            record.update(result.as_dict())
            record.update(ttftMs=None, itlMs=None, capacityRps=0.0, vramGiB=None, bound=None)
            return record, False
        capacity_key = (key, query.prompt, query.output, query.ttft_slo, query.itl_slo)
        capacity = self._capacities.get(capacity_key)
        if capacity is None:
            estimate = predictor.capacity(
                _Slo(query.ttft_slo, query.itl_slo), _Traffic(query.prompt, query.output)
            )
            capacity = (estimate.rps, estimate.max_batch, estimate.limited_by)
            self._capacities[capacity_key] = capacity
        details = result.as_dict()
        record.update(
            ttftMs=details.pop("ttftMs"),
            itlMs=details.pop("itlMs"),
            capacityRps=round(capacity[0], 4),
            vramGiB=details.pop("vramGiB"),
            fits=details.pop("fits"),
            bound=details.pop("bound"),
        )
        record.update(details)
        record.update(capacityBatch=capacity[1], capacityLimitedBy=capacity[2])
        if not result.fits:
            record["reason"] = (
                f"needs {result.vram_gib:.1f} GiB per GPU (weights {result.weights_gib:.1f} + "
                f"KV cache {result.kv_cache_gib:.1f} + engine reserve {result.reserve_gib:.1f}), "
                f"{gpu_id} has {result.memory_gib:g} GiB"
            )
        return record, result.fits


def _lines(handle: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield number, line


def _run_batch(source: TextIO, defaults: dict[str, Any], out: TextIO, runner: QueryRunner) -> bool:
    """Answer every line; True when all lines were valid."""
    all_valid = True
    write = out.write
    for number, line in _lines(source):
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("a line must be a JSON object")
            query = PredictQuery.model_validate({**defaults, **data})
            record, _ = runner.answer(query)
            write(json.dumps({"line": number, **record}) + "\n")
        except (ValueError, ValidationError, UnknownReference, InvalidQuery) as error:
            all_valid = False
            write(json.dumps({"line": number, "error": _one_line(error)}) + "\n")
    return all_valid


def _one_line(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in issue['loc']) or 'line'}: {issue['msg']}"
            for issue in error.errors()
        )
    return str(error)


def load_profiles(paths: list[Path], catalog: Catalog) -> ProfileBook:
    """PerformanceProfile documents from YAML files (one document per file)."""
    documents = []
    for path in paths:
        text = read_limited(path)
        try:
            data = yaml.safe_load(text)
            documents.append(PerformanceProfile.model_validate(data))
        except yaml.YAMLError as error:
            raise CalibrationError(f"{path}: not YAML: {error}") from None
        except ValidationError as error:
            raise CalibrationError(
                f"{path}: not a PerformanceProfile: {_one_line(error)}"
            ) from None
    return ProfileBook.from_documents(documents, catalog)


def _print_table(record: dict[str, Any]) -> None:
    rows = [[key, "" if value is None else str(value)] for key, value in record.items()]
    render.stdout.print(render.table("prediction", ["key", "value"], rows))


def _fail(message: str) -> typer.Exit:
    render.stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(EXIT_INVALID)


GpuOption = Annotated[str | None, typer.Option("--gpu", help="GPU catalog id or name.")]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="Model catalog id or Hugging Face repo.")
]
PrecisionOption = Annotated[
    Precision | None,
    typer.Option("--precision", help="bf16, fp16, fp8, int8, int4 or a GGUF type: q4_k_m, ..."),
]
EngineOption = Annotated[Engine | None, typer.Option("--engine", help="Inference engine.")]
TpOption = Annotated[int | None, typer.Option("--tp", min=1, max=64, help="Tensor parallel.")]
BatchOption = Annotated[int | None, typer.Option("--batch", min=1, help="Concurrent sequences.")]
PromptOption = Annotated[
    int | None, typer.Option("--prompt", min=1, help="Prompt tokens (default 512).")
]
ContextOption = Annotated[
    int | None, typer.Option("--context", min=0, help="Tokens in context (default: prompt).")
]
OutputOption = Annotated[
    int | None, typer.Option("--output", min=1, help="Output tokens for capacity (256).")
]
TtftSloOption = Annotated[
    float | None, typer.Option("--ttft-slo", help="TTFT target for capacity, ms (1000).")
]
ItlSloOption = Annotated[
    float | None, typer.Option("--itl-slo", help="ITL target for capacity, ms (100).")
]
DerateOption = Annotated[
    float | None, typer.Option("--derate", min=0.0, max=1.0, help="Thermal throttle ratio.")
]
InterconnectOption = Annotated[
    Interconnect | None, typer.Option("--interconnect", help="Link between the GPUs.")
]
KvCacheFp8Option = Annotated[bool, typer.Option("--kv-cache-fp8", help="FP8 KV cache.")]
EagerOption = Annotated[bool, typer.Option("--eager", help="No CUDA graphs.")]
GenerationOption = Annotated[
    str | None,
    typer.Option("--generation", help=f"Older engine release: {', '.join(GENERATIONS)}."),
]
HostFactorOption = Annotated[
    float | None,
    typer.Option("--host-factor", min=0.1, max=10.0, help="Host CPU time x this (1.0)."),
]
FlashAttentionOption = Annotated[
    bool | None,
    typer.Option("--flash-attn/--no-flash-attn", help="llama.cpp flash attention."),
]
UbatchOption = Annotated[
    int | None, typer.Option("--ubatch", min=1, max=65536, help="llama.cpp n_ubatch.")
]
KvCacheTypeOption = Annotated[
    KvCacheType | None, typer.Option("--kv-cache-type", help="KV cache element type.")
]
PromptKernelsOption = Annotated[
    PromptKernels | None, typer.Option("--prompt-kernels", help="llama.cpp prompt path.")
]
BackendOption = Annotated[
    Backend | None, typer.Option("--backend", help="llama.cpp backend: cuda, hip, vulkan.")
]
ProfileOption = Annotated[
    list[Path] | None,
    typer.Option("--profile", help="PerformanceProfile YAML (gridplace calibrate)."),
]
InputOption = Annotated[
    Path | None,
    typer.Option(
        "--input",
        help="JSONL file of queries ('-' for stdin), one JSON object per line with keys "
        f"{INPUT_KEYS} ('?': optional; the flags given are every line's defaults), e.g. "
        '{"gpu": "rtx-4090", "model": "llama-3.1-8b", "precision": "fp8", "batch": 8}.',
    ),
]
OutputFormatOption = Annotated[
    Format, typer.Option("--format", help="table or json (JSONL with --input).")
]


def command(
    gpu: GpuOption = None,
    model: ModelOption = None,
    precision: PrecisionOption = None,
    engine: EngineOption = None,
    tp: TpOption = None,
    batch: BatchOption = None,
    prompt: PromptOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
    ttft_slo: TtftSloOption = None,
    itl_slo: ItlSloOption = None,
    derate: DerateOption = None,
    interconnect: InterconnectOption = None,
    kv_cache_fp8: KvCacheFp8Option = False,
    eager: EagerOption = False,
    generation: GenerationOption = None,
    host_factor: HostFactorOption = None,
    flash_attention: FlashAttentionOption = None,
    ubatch: UbatchOption = None,
    kv_cache_type: KvCacheTypeOption = None,
    prompt_kernels: PromptKernelsOption = None,
    backend: BackendOption = None,
    profile_paths: ProfileOption = None,
    input_path: InputOption = None,
    output_format: OutputFormatOption = Format.TABLE,
) -> None:
    """Predict TTFT, ITL, capacity and VRAM of a model on a GPU (or many, from JSONL)."""
    given = {
        "gpu": gpu,
        "model": model,
        "precision": precision,
        "engine": engine,
        "tp": tp,
        "batch": batch,
        "prompt": prompt,
        "context": context,
        "output": output,
        "ttft_slo": ttft_slo,
        "itl_slo": itl_slo,
        "derate": derate,
        "interconnect": interconnect,
        "generation": generation,
        "host_factor": host_factor,
        "flash_attention": flash_attention,
        "ubatch": ubatch,
        "kv_cache_type": kv_cache_type,
        "prompt_kernels": prompt_kernels,
        "backend": backend,
    }
    defaults: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if kv_cache_fp8:
        defaults["kv_cache_fp8"] = True
    if eager:
        defaults["eager"] = True
    catalog = builtin_catalog()
    try:
        profiles = load_profiles(profile_paths, catalog) if profile_paths else None
    except PerfModelError as error:
        raise _fail(str(error)) from None
    runner = QueryRunner(catalog, profiles)
    if input_path is not None:
        _answer_input(input_path, defaults, runner)
        return
    missing = [f"--{name}" for name in ("gpu", "model", "precision") if given[name] is None]
    if missing:
        raise typer.BadParameter(f"missing {', '.join(missing)} (or give --input FILE)")
    record, runnable = _answer_flags(defaults, runner)
    if output_format is Format.JSON:
        render.print_json(record)
    else:
        _print_table(record)
    if not runnable:
        render.stderr.print(f"[bold red]cannot run:[/] {record.get('reason', '')}", highlight=False)
        raise typer.Exit(EXIT_INVALID)


def _answer_input(input_path: Path, defaults: dict[str, Any], runner: QueryRunner) -> None:
    """Answer each JSONL line of ``input_path`` ('-': stdin) on stdout; exit 1 if one was bad."""
    camel = {PredictQuery.model_fields[k].alias or k: v for k, v in defaults.items()}
    if str(input_path) == "-":
        valid = _run_batch(sys.stdin, camel, sys.stdout, runner)
    else:
        try:
            with input_path.open(encoding="utf-8") as handle:
                valid = _run_batch(handle, camel, sys.stdout, runner)
        except OSError as error:
            raise _fail(f"cannot read {input_path}: {error.strerror or error}") from None
    if not valid:
        render.stderr.print("[bold red]error:[/] some lines were invalid (see their 'error')")
        raise typer.Exit(EXIT_INVALID)


def _answer_flags(defaults: dict[str, Any], runner: QueryRunner) -> tuple[dict[str, Any], bool]:
    """The answer to the query the flags make, and whether it can run; exit 1 on a bad query."""
    try:
        return runner.answer(PredictQuery.model_validate(defaults))
    except (UnknownReference, InvalidQuery, SpecError) as error:
        raise _fail(str(error)) from None
    except ValidationError as error:
        raise _fail(_one_line(error)) from None
