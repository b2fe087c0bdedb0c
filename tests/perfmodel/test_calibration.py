"""``gridplace calibrate``: llama-bench JSON/JSONL and vLLM results into a profile, and its use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.planner.perfmodel import Predictor, ProfileBook
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Precision
from gridplace.specs.profile import PerformanceProfile

runner = CliRunner()


def _test(n_prompt: int, n_gen: int, avg_ns: float, **extra: Any) -> dict[str, Any]:
    """One test object as llama-bench -o json writes it (2024-2025 builds)."""
    return {
        "build_commit": "a1b2c3d", "build_number": 5000, "cpu_info": "AMD Ryzen 9 7950X",
        "gpu_info": "NVIDIA GeForce RTX 3090", "backends": "CUDA",
        "model_filename": "Meta-Llama-3-8B.Q4_K_M.gguf", "model_type": "llama 8B Q4_K - Medium",
        "model_size": 4920733696, "model_n_params": 8030261248, "n_batch": 2048,
        "n_ubatch": 512, "n_threads": 16, "type_k": "f16", "type_v": "f16", "n_gpu_layers": 99,
        "split_mode": "layer", "flash_attn": False, "n_prompt": n_prompt, "n_gen": n_gen,
        "n_depth": 0, "test_time": "2025-01-01T00:00:00Z", "avg_ns": avg_ns,
        "stddev_ns": 1000, "avg_ts": (n_prompt or n_gen) / avg_ns * 1e9, "stddev_ts": 1.0,
        "samples_ns": [avg_ns] * 5, "samples_ts": [(n_prompt or n_gen) / avg_ns * 1e9] * 5,
        **extra,
    }  # fmt: skip


RUN = [_test(512, 0, 160e6), _test(0, 128, 128 * 9.5e6)]


def _calibrate(tmp_path: Path, text: str, *flags: str, name: str = "bench.json") -> Any:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    return runner.invoke(app, ["calibrate", *flags, str(source)])


def _profile(result: Any) -> PerformanceProfile:
    assert result.exit_code == 0, result.output
    return PerformanceProfile.model_validate(yaml.safe_load(result.stdout))


def test_reads_llama_bench_json_and_matches_gpu_model_and_type(tmp_path: Path) -> None:
    profile = _profile(_calibrate(tmp_path, json.dumps(RUN, indent=2), "--llama-bench"))
    spec = profile.spec
    assert (spec.gpu, spec.model, spec.precision) == ("rtx-3090", "llama-3-8b", Precision.Q4_K_M)
    assert spec.engine is Engine.LLAMA_CPP
    assert spec.engine_options is not None and spec.engine_options.flash_attention is False
    assert spec.engine_options.ubatch_tokens == 512
    assert spec.engine_options.backend == "cuda"
    ttft = next(p for p in spec.points if p.ttft_ms is not None)
    itl = next(p for p in spec.points if p.itl_ms is not None)
    assert ttft.prompt_tokens == 512 and ttft.ttft_ms == pytest.approx(160.0)
    assert itl.context_tokens == 64 and itl.itl_ms == pytest.approx(9.5)
    assert "a1b2c3d" in spec.source


def test_reads_jsonl_and_a_tg_test_at_depth_has_its_mean_context(tmp_path: Path) -> None:
    rows = [_test(512, 0, 160e6), _test(0, 128, 128 * 11e6, n_depth=4096)]
    text = "\n".join(json.dumps(row) for row in rows) + "\n"
    profile = _profile(_calibrate(tmp_path, text, "--llama-bench", name="bench.jsonl"))
    itl = next(p for p in profile.spec.points if p.itl_ms is not None)
    assert itl.context_tokens == 4096 + 64


@pytest.mark.parametrize(
    ("breakage", "field"),
    [({"avg_ns": "fast"}, "avg_ns"), ({"n_prompt": None}, "n_prompt"),
     ({"gpu_info": "Mystery GPU 9000"}, "gpu_info"), ({"model_type": "llama 8B Q3_K - Small"},
     "model_type"), ({"type_k": "q9"}, "type_k")],
)  # fmt: skip
def test_a_malformed_llama_bench_file_is_refused_naming_the_field(
    tmp_path: Path, breakage: dict[str, Any], field: str
) -> None:
    rows = [{**RUN[0], **breakage}, RUN[1]]
    result = _calibrate(tmp_path, json.dumps(rows), "--llama-bench")
    assert result.exit_code == 1
    assert field in result.output and "Traceback" not in result.output


def test_not_json_at_all_is_refused(tmp_path: Path) -> None:
    result = _calibrate(tmp_path, "| model | size |\n", "--llama-bench")
    assert result.exit_code == 1 and "JSON" in result.output


VLLM_RESULT = {
    "date": "20250101-120000", "backend": "vllm", "model_id": "meta-llama/Meta-Llama-3-8B",
    "tokenizer_id": "meta-llama/Meta-Llama-3-8B", "num_prompts": 100, "request_rate": 1.0,
    "burstiness": 1.0, "max_concurrency": 1, "duration": 120.0, "completed": 100,
    "total_input_tokens": 102400, "total_output_tokens": 12800, "request_throughput": 0.83,
    "output_throughput": 106.7, "total_token_throughput": 960.0, "mean_ttft_ms": 31.0,
    "median_ttft_ms": 30.0, "std_ttft_ms": 2.0, "p99_ttft_ms": 40.0, "mean_tpot_ms": 7.1,
    "median_tpot_ms": 7.0, "std_tpot_ms": 0.2, "p99_tpot_ms": 7.5, "mean_itl_ms": 7.1,
    "median_itl_ms": 7.0, "std_itl_ms": 0.3, "p99_itl_ms": 8.0,
}  # fmt: skip


def test_reads_a_vllm_result_with_the_gpu_given(tmp_path: Path) -> None:
    profile = _profile(
        _calibrate(tmp_path, json.dumps(VLLM_RESULT), "--gpu", "h100-sxm", "--vllm-bench")
    )
    spec = profile.spec
    assert (spec.gpu, spec.model, spec.engine) == ("h100-sxm", "llama-3-8b", Engine.VLLM)
    ttft = next(p for p in spec.points if p.ttft_ms is not None)
    itl = next(p for p in spec.points if p.itl_ms is not None)
    assert ttft.prompt_tokens == 1024 and itl.context_tokens == 1024 + 64


def test_a_vllm_result_without_the_gpu_or_with_a_broken_field_is_refused(tmp_path: Path) -> None:
    assert "--gpu" in _calibrate(tmp_path, json.dumps(VLLM_RESULT), "--vllm-bench").output
    broken = {**VLLM_RESULT, "median_itl_ms": "n/a"}
    result = _calibrate(tmp_path, json.dumps(broken), "--gpu", "h100-sxm", "--vllm-bench")
    assert result.exit_code == 1 and "median_itl_ms" in result.output


def test_a_profile_moves_predictions_at_other_lengths_and_records_its_settings(
    tmp_path: Path,
) -> None:
    profile = _profile(_calibrate(tmp_path, json.dumps(RUN), "--llama-bench"))
    catalog = builtin_catalog()
    book = ProfileBook.from_documents([profile], catalog)
    args = (catalog.models["llama-3-8b"], catalog.gpus["rtx-3090"], Precision.Q4_K_M)
    plain = Predictor(*args, Engine.LLAMA_CPP, model_id="llama-3-8b", gpu_id="rtx-3090")
    fitted = Predictor(
        *args, Engine.LLAMA_CPP, profiles=book, model_id="llama-3-8b", gpu_id="rtx-3090"
    )
    assert fitted.prefill_ms(1, 512) == pytest.approx(160.0)
    assert fitted.decode_ms(1, 64) == pytest.approx(9.5)
    # Other lengths move with the level but keep the measured run's (non-flash) shape.
    assert fitted.prefill_ms(1, 8192) != pytest.approx(plain.prefill_ms(1, 8192), rel=0.02)
    non_flash_growth = fitted.prefill_ms(1, 8192) / fitted.prefill_ms(1, 512)
    assert non_flash_growth > plain.prefill_ms(1, 8192) / plain.prefill_ms(1, 512)


def test_predict_uses_a_profile_file(tmp_path: Path) -> None:
    result = _calibrate(tmp_path, json.dumps(RUN), "--llama-bench")
    path = tmp_path / "profile.yaml"
    path.write_text(result.stdout, encoding="utf-8")
    query = ["predict", "--gpu", "rtx-3090", "--model", "llama-3-8b", "--precision", "q4_k_m",
             "--engine", "llama.cpp", "--prompt", "4096", "--format", "json"]  # fmt: skip
    plain = json.loads(runner.invoke(app, query).stdout)
    fitted = runner.invoke(app, [*query, "--profile", str(path)])
    assert fitted.exit_code == 0, fitted.output
    record = json.loads(fitted.stdout)
    assert record["source"] == "profile" and record["ttftMs"] != plain["ttftMs"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: PerformanceProfile\nspec: {}\n", encoding="utf-8")
    refused = runner.invoke(app, [*query, "--profile", str(bad)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
