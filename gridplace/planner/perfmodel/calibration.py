"""Benchmark results a node operator already has, turned into a ``PerformanceProfile``.

Owns: reading llama-bench output (``-o json``: one array of test objects; ``-o jsonl``: one
object per line) and vLLM's serving-benchmark result (``--save-result``) from their text, matching
the GPU and model they name to the catalogs, and the profile's points. Must not: open files (the
caller reads them, with its size limit) or refit (``profiles`` does, when the profile is used).

llama-bench tests: ``ppN`` (``n_prompt`` N, ``n_gen`` 0) is one prompt of N tokens: a TTFT point
(``avg_ns``); ``tgN`` (``n_gen`` N) generates N tokens after ``n_depth`` tokens of context: an
ITL point of ``avg_ns / N`` at the mean context ``n_depth + N/2``. Prompt tests at a depth and
mixed ``pg`` tests are skipped. The run's settings (``flash_attn``, ``n_ubatch``, ``type_k``,
the backend) become the profile's engine options; tests with other settings than the first are
skipped; the build goes into ``source``. The GPU is ``gpu_info`` (its first device), the model
the catalog entry with ``model_n_params`` (within 3%) whose family ``model_type`` names (among
several, the one whose id ``model_filename`` contains), the precision the GGUF type in
``model_type``.

vLLM result: ``median_ttft_ms`` at the mean input length (batch 1) and ``median_itl_ms`` at
batch ``max_concurrency`` (1 when absent) and the mean context input + output / 2. Under load
TTFT includes queueing: calibrate from a light run (``--max-concurrency 1`` or a low rate). The
file names the model (``model_id``) but not the GPU or precision: those come from the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gridplace.planner.perfmodel.errors import PerfModelError
from gridplace.specs.catalog import Catalog, unknown_message
from gridplace.specs.common import (
    Backend,
    Engine,
    EngineOptions,
    KvCacheType,
    Metadata,
    Precision,
)
from gridplace.specs.profile import PerformanceProfile, PerformanceProfileSpec, ProfilePoint

MAX_ROWS = 10_000
PARAMETER_TOLERANCE = 0.03
# llama.cpp's file-type names as llama-bench prints them in model_type.
_FTYPE_NAMES = {
    "f16": Precision.FP16,
    "bf16": Precision.BF16,
    "q8_0": Precision.Q8_0,
    "q6_k": Precision.Q6_K,
    "q5_k - medium": Precision.Q5_K_M,
    "q4_k - medium": Precision.Q4_K_M,
    "q4_0": Precision.Q4_0,
    "iq4_xs - 4.25 bpw": Precision.IQ4_XS,
}


class CalibrationError(PerfModelError):
    """A benchmark file that cannot be read into a profile; names the field and the row."""


@dataclass(frozen=True)
class Identity:
    """What the caller says about the run (flags), overriding what the file says."""

    gpu: str | None = None
    model: str | None = None
    precision: Precision | None = None
    tensor_parallel: int = 1
    name: str | None = None


@dataclass
class _Rows:
    points: list[ProfilePoint] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _field(row: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in row:
        raise CalibrationError(f"{where}: missing field '{name}'")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CalibrationError(f"{where}: field '{name}' has the wrong type ({value!r})")
    return value


def parse_llama_bench(text: str, origin: str) -> list[dict[str, Any]]:
    """The test objects of a llama-bench JSON array or JSONL file."""
    stripped = text.strip()
    if not stripped:
        raise CalibrationError(f"{origin}: empty file")
    try:
        if stripped.startswith("["):
            rows = json.loads(stripped)
        else:
            rows = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise CalibrationError(
            f"{origin}: not llama-bench JSON or JSONL (line {error.lineno}: {error.msg})"
        ) from None
    if not isinstance(rows, list) or not rows:
        raise CalibrationError(f"{origin}: expected a JSON array of tests or JSONL lines")
    if len(rows) > MAX_ROWS:
        raise CalibrationError(f"{origin}: {len(rows)} tests; at most {MAX_ROWS}")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise CalibrationError(f"{origin}: test {number} is not a JSON object")
    return rows


def gguf_precision(model_type: str, where: str) -> Precision:
    """The GGUF type llama-bench names at the end of ``model_type`` ("llama 8B Q4_K - Medium")."""
    text = model_type.lower().replace("mostly ", "")
    for name, precision in _FTYPE_NAMES.items():
        if text.endswith(" " + name):
            return precision
    known = ", ".join(_FTYPE_NAMES)
    raise CalibrationError(
        f"{where}: field 'model_type' ({model_type!r}) names no GGUF type the model knows "
        f"({known}); pass --precision"
    )


def match_model(
    catalog: Catalog, model_type: str, parameters: float, filename: str, where: str
) -> str:
    """The catalog model with ``parameters`` (within 3%) of the family ``model_type`` names; when
    several have them, the one whose id the file name contains."""
    family = model_type.split()[0].lower() if model_type.split() else ""
    found = [
        model_id
        for model_id, spec in catalog.models.items()
        if abs(spec.parameters_billion * 1e9 / parameters - 1) <= PARAMETER_TOLERANCE
        and model_id.startswith(family)
    ]
    named = [model_id for model_id in found if model_id in filename.lower().replace("_", "-")]
    if len(found) == 1 or len(named) == 1:
        return found[0] if len(found) == 1 else named[0]
    what = f"field 'model_type' ({model_type!r}, model_n_params {parameters:.4g})"
    if not found:
        raise CalibrationError(f"{where}: {what} matches no catalog model; pass --model")
    raise CalibrationError(f"{where}: {what} matches {', '.join(found)}; pass --model")


def _gpu_id(catalog: Catalog, reference: str, where: str) -> str:
    found = catalog.gpu_id(reference)
    if found is None:
        near = catalog.gpu_near_matches(reference)
        raise CalibrationError(f"{where}: {unknown_message('GPU', reference, near)}; pass --gpu")
    return found


def _model_id(catalog: Catalog, reference: str, where: str) -> str:
    found = catalog.model_id(reference)
    if found is None:
        near = catalog.model_near_matches(reference)
        raise CalibrationError(f"{where}: {unknown_message('model', reference, near)}")
    return found


def _settings(row: dict[str, Any], where: str) -> EngineOptions:
    flash = row.get("flash_attn", False)
    if not isinstance(flash, (bool, int)):
        raise CalibrationError(f"{where}: field 'flash_attn' must be a boolean, not {flash!r}")
    ubatch = row.get("n_ubatch", row.get("n_batch", 512))
    if isinstance(ubatch, bool) or not isinstance(ubatch, int) or not 1 <= ubatch <= 65536:
        raise CalibrationError(f"{where}: field 'n_ubatch' must be 1..65536, not {ubatch!r}")
    type_k = row.get("type_k", "f16")
    try:
        kv_type = KvCacheType(str(type_k).lower())
    except ValueError:
        raise CalibrationError(
            f"{where}: field 'type_k' ({type_k!r}) is not f16, q8_0 or q4_0"
        ) from None
    # -fa -1 ("auto", 2025 builds) turns flash attention on where the GPU has it.
    return EngineOptions(
        flash_attention=bool(flash),
        ubatch_tokens=ubatch,
        kv_cache_type=kv_type,
        backend=_backend(row),
    )


def _backend(row: dict[str, Any]) -> Backend | None:
    """The build's GPU backend: ``backends`` ("CUDA", "ROCm", "Vulkan") or older booleans."""
    named = str(row.get("backends", "")).lower()
    for word, backend in (("vulkan", Backend.VULKAN), ("rocm", Backend.HIP), ("hip", Backend.HIP),
                          ("cuda", Backend.CUDA)):  # fmt: skip
        if word in named or row.get(word) is True:
            return backend
    return None


def _llama_point(row: dict[str, Any], where: str) -> ProfilePoint | str:
    """A profile point, or why the test is skipped."""
    n_prompt = _field(row, "n_prompt", int, where)
    n_gen = _field(row, "n_gen", int, where)
    n_depth = row.get("n_depth", 0)
    if isinstance(n_depth, bool) or not isinstance(n_depth, int) or n_depth < 0:
        raise CalibrationError(f"{where}: field 'n_depth' must be an integer >= 0")
    avg_ns = _field(row, "avg_ns", (int, float), where)
    if avg_ns <= 0 or n_prompt < 0 or n_gen < 0:
        raise CalibrationError(f"{where}: fields 'avg_ns', 'n_prompt', 'n_gen' must be > 0 / >= 0")
    if n_prompt > 0 and n_gen == 0:
        if n_depth:
            return f"{where}: pp{n_prompt} at depth {n_depth} skipped (a prompt after context)"
        return ProfilePoint(prompt_tokens=n_prompt, ttft_ms=avg_ns / 1e6)
    if n_gen > 0 and n_prompt == 0:
        itl = avg_ns / 1e6 / n_gen
        return ProfilePoint(context_tokens=n_depth + n_gen // 2, itl_ms=itl)
    return f"{where}: pp{n_prompt}+tg{n_gen} skipped (mixed test)"


def llama_bench_profile(
    rows: list[dict[str, Any]], origin: str, catalog: Catalog, identity: Identity
) -> tuple[PerformanceProfile, list[str]]:
    """The profile of llama-bench ``rows`` and the notes on the tests it skipped."""
    first = f"{origin} test 1"
    settings = _settings(rows[0], first)
    collected = _Rows()
    for number, row in enumerate(rows, start=1):
        where = f"{origin} test {number}"
        if _settings(row, where) != settings:
            collected.skipped.append(f"{where}: other engine settings than test 1, skipped")
            continue
        point = _llama_point(row, where)
        if isinstance(point, str):
            collected.skipped.append(point)
        else:
            collected.points.append(point)
    if not collected.points:
        raise CalibrationError(f"{origin}: no pp or tg test to calibrate from")
    row = rows[0]
    if identity.gpu is not None:
        gpu_id = _gpu_id(catalog, identity.gpu, "--gpu")
    else:
        gpu_info = row.get("gpu_info")
        if not isinstance(gpu_info, str) or not gpu_info.strip():
            raise CalibrationError(f"{first}: field 'gpu_info' is missing or empty; pass --gpu")
        gpu_id = _gpu_id(catalog, gpu_info.split(",")[0].strip(), f"{first}: field 'gpu_info'")
    model_type = row.get("model_type")
    if identity.model is not None:
        model_id = _model_id(catalog, identity.model, "--model")
    else:
        if not isinstance(model_type, str):
            raise CalibrationError(f"{first}: missing field 'model_type'; pass --model")
        parameters = _field(row, "model_n_params", int, first)
        if parameters <= 0:
            raise CalibrationError(f"{first}: field 'model_n_params' must be > 0")
        filename = row.get("model_filename")
        filename = filename if isinstance(filename, str) else ""
        model_id = match_model(catalog, model_type, parameters, filename, first)
    if identity.precision is not None:
        precision = identity.precision
    elif isinstance(model_type, str):
        precision = gguf_precision(model_type, first)
    else:
        raise CalibrationError(f"{first}: missing field 'model_type'; pass --precision")
    build = row.get("build_commit")
    build_number = row.get("build_number")
    source = f"llama-bench {origin}" + (f", build {build} ({build_number})" if build else "")
    profile = _profile(
        identity, model_id, gpu_id, precision, Engine.LLAMA_CPP, settings, collected.points, source
    )
    return profile, collected.skipped


def vllm_bench_profile(
    text: str, origin: str, catalog: Catalog, identity: Identity
) -> PerformanceProfile:
    """The profile of one vLLM serving-benchmark result (``--save-result``)."""
    try:
        result = json.loads(text)
    except json.JSONDecodeError as error:
        raise CalibrationError(
            f"{origin}: not a vLLM result JSON (line {error.lineno}: {error.msg})"
        ) from None
    if not isinstance(result, dict):
        raise CalibrationError(f"{origin}: a vLLM result is one JSON object")
    completed = _field(result, "completed", int, origin)
    if completed <= 0:
        raise CalibrationError(f"{origin}: field 'completed' must be > 0 (no request finished)")
    inputs = _field(result, "total_input_tokens", int, origin)
    outputs = _field(result, "total_output_tokens", int, origin)
    ttft = _field(result, "median_ttft_ms", (int, float), origin)
    itl = _field(result, "median_itl_ms", (int, float), origin)
    if ttft <= 0 or itl <= 0 or inputs <= 0:
        raise CalibrationError(
            f"{origin}: fields 'median_ttft_ms', 'median_itl_ms', 'total_input_tokens' must be > 0"
        )
    concurrency = result.get("max_concurrency") or 1
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise CalibrationError(f"{origin}: field 'max_concurrency' must be an integer >= 1")
    prompt = max(round(inputs / completed), 1)
    context = prompt + round(outputs / completed) // 2
    if identity.model is not None:
        model_id = _model_id(catalog, identity.model, "--model")
    else:
        model_ref = _field(result, "model_id", str, origin)
        model_id = _model_id(catalog, model_ref, f"{origin}: field 'model_id'")
    if identity.gpu is None:
        raise CalibrationError(f"{origin}: a vLLM result does not name its GPU; pass --gpu")
    gpu_id = _gpu_id(catalog, identity.gpu, "--gpu")
    points = [
        ProfilePoint(prompt_tokens=prompt, ttft_ms=float(ttft)),
        ProfilePoint(batch=min(concurrency, 4096), context_tokens=context, itl_ms=float(itl)),
    ]
    date = result.get("date")
    source = f"vllm bench serve {origin}" + (f", {date}" if isinstance(date, str) else "")
    return _profile(
        identity,
        model_id,
        gpu_id,
        identity.precision or Precision.BF16,
        Engine.VLLM,
        None,
        points,
        source[:500],
    )


def _profile(
    identity: Identity,
    model_id: str,
    gpu_id: str,
    precision: Precision,
    engine: Engine,
    settings: EngineOptions | None,
    points: Iterable[ProfilePoint],
    source: str,
) -> PerformanceProfile:
    name = identity.name or f"{gpu_id}-{model_id}-{precision.value}-{engine.value}"
    name = re.sub(r"[^a-z0-9._-]", "-", name.lower()).strip("-._")[:63] or "profile"
    return PerformanceProfile(
        metadata=Metadata(name=name),
        spec=PerformanceProfileSpec(
            model=model_id,
            gpu=gpu_id,
            precision=precision,
            engine=engine,
            tensor_parallel=identity.tensor_parallel,
            engine_options=settings,
            points=list(points)[:10_000],
            source=source[:500],
        ),
    )
