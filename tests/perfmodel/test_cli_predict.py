"""``gridplace predict``: documented JSON keys, exit codes, and the JSONL batch mode."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from gridplace.api.cli import app

runner = CliRunner()
DOCUMENTED_KEYS = {"ttftMs", "itlMs", "capacityRps", "vramGiB", "fits", "bound"}
ISSUE_EXAMPLE = [
    "predict", "--gpu", "rtx-4090", "--model", "llama-3.1-8b", "--precision", "int4",
    "--engine", "llama.cpp", "--format", "json",
]  # fmt: skip


def test_the_issue_example_prints_the_documented_keys() -> None:
    result = runner.invoke(app, ISSUE_EXAMPLE)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record) >= DOCUMENTED_KEYS
    assert record["fits"] is True and record["bound"] in ("memory", "compute")
    assert record["ttftMs"] > 0 and record["itlMs"] > 0 and record["capacityRps"] > 0
    assert record["engine"] == "llama.cpp" and record["supported"] is True


def test_flags_change_the_answer() -> None:
    base = json.loads(runner.invoke(app, ISSUE_EXAMPLE).stdout)
    bigger = json.loads(runner.invoke(app, [*ISSUE_EXAMPLE, "--batch", "16"]).stdout)
    assert bigger["itlMs"] > base["itlMs"]
    assert bigger["vramGiB"] > base["vramGiB"]
    tight = json.loads(runner.invoke(app, [*ISSUE_EXAMPLE, "--itl-slo", "10"]).stdout)
    assert tight["capacityRps"] < base["capacityRps"]


def test_table_format_is_the_default() -> None:
    result = runner.invoke(app, ISSUE_EXAMPLE[:-2])
    assert result.exit_code == 0
    assert "ttftMs" in result.stdout and "{" not in result.stdout


def test_unknown_gpu_exits_1_with_near_matches_on_stderr() -> None:
    result = runner.invoke(app, ["predict", "--gpu", "rtx-4909", "--model", "llama-3.1-8b",
                                 "--precision", "int4"])  # fmt: skip
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "rtx-4090" in result.stderr and "Traceback" not in result.output


def test_unknown_model_exits_1() -> None:
    result = runner.invoke(app, ["predict", "--gpu", "rtx-4090", "--model", "llama-3.1-9b",
                                 "--precision", "int4"])  # fmt: skip
    assert result.exit_code == 1
    assert "llama-3.1-8b" in result.stderr


def test_not_fitting_and_unsupported_exit_1_but_still_answer() -> None:
    too_big = runner.invoke(app, ["predict", "--gpu", "rtx-4090", "--model", "llama-3.1-70b",
                                  "--precision", "bf16", "--format", "json"])  # fmt: skip
    assert too_big.exit_code == 1
    assert json.loads(too_big.stdout)["fits"] is False
    no_fp8 = runner.invoke(app, ["predict", "--gpu", "a100-sxm-80gb", "--model", "llama-3.1-8b",
                                 "--precision", "fp8", "--format", "json"])  # fmt: skip
    assert no_fp8.exit_code == 1
    record = json.loads(no_fp8.stdout)
    assert record["supported"] is False and "ampere" in record["reason"]


def test_missing_flags_are_a_usage_error() -> None:
    result = runner.invoke(app, ["predict", "--gpu", "rtx-4090"])
    assert result.exit_code == 2


def _write_queries(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_answers_every_line_and_flags_bad_ones(tmp_path: Path) -> None:
    queries = _write_queries(tmp_path / "q.jsonl", [
        json.dumps({"gpu": "h100-sxm", "model": "llama-3.1-70b", "precision": "fp8", "tp": 2}),
        "{not json",
        json.dumps({"gpu": "rtx-4909", "model": "llama-3.1-8b", "precision": "int4"}),
        json.dumps({"gpu": "rtx-4090", "model": "llama-3.1-8b", "precision": "int4",
                    "batch": 0}),
        "",
        json.dumps({"gpu": "rtx-3090", "model": "qwen2.5-7b", "precision": "fp16",
                    "ttftSlo": 500, "itlSlo": 40, "kvCacheFp8": True}),
    ])  # fmt: skip
    result = runner.invoke(app, ["predict", "--input", str(queries)])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 6]
    assert set(records[0]) >= DOCUMENTED_KEYS and "error" not in records[0]
    assert all("error" in r for r in records[1:4])
    assert "rtx-4090" in records[2]["error"]
    assert "batch" in records[3]["error"]
    assert set(records[4]) >= DOCUMENTED_KEYS


def test_jsonl_all_valid_exits_0_and_flags_are_defaults(tmp_path: Path) -> None:
    queries = _write_queries(tmp_path / "q.jsonl", [
        json.dumps({"model": "llama-3.1-8b"}),
        json.dumps({"model": "qwen2.5-7b", "precision": "bf16"}),
    ])  # fmt: skip
    result = runner.invoke(
        app, ["predict", "--input", str(queries), "--gpu", "l40s", "--precision", "fp8"]
    )
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["gpu"] == second["gpu"] == "l40s"
    assert first["precision"] == "fp8" and second["precision"] == "bf16"


def test_jsonl_handles_many_queries_quickly(tmp_path: Path) -> None:
    gpus = ["rtx-4090", "h100-sxm", "a100-sxm-80gb", "l40s"]
    lines = [
        json.dumps({"gpu": gpus[i % 4], "model": "llama-3.1-8b", "precision": "bf16",
                    "batch": 1 + i % 32, "prompt": 128 * (1 + i % 8)})
        for i in range(2000)
    ]  # fmt: skip
    queries = _write_queries(tmp_path / "many.jsonl", lines)
    started = time.perf_counter()
    result = runner.invoke(app, ["predict", "--input", str(queries)])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2000
    assert elapsed < 5.0  # 10,000 lines in a few seconds means 2,000 in well under that


def test_an_older_engine_generation_and_a_slower_host_predict_slower_decode() -> None:
    query = [
        "predict", "--gpu", "h100-sxm", "--model", "llama-2-70b", "--precision", "fp16",
        "--tp", "8", "--batch", "16", "--format", "json",
    ]  # fmt: skip
    today = json.loads(runner.invoke(app, query).stdout)
    old = json.loads(runner.invoke(app, [*query, "--generation", "vllm-2023"]).stdout)
    slow_host = runner.invoke(app, [*query, "--generation", "vllm-2023", "--host-factor", "2"])
    assert old["itlMs"] > today["itlMs"]
    assert json.loads(slow_host.stdout)["itlMs"] > old["itlMs"]
    unknown = runner.invoke(app, [*query, "--generation", "vllm-1999"])
    assert unknown.exit_code == 1
    assert "vllm-2023" in unknown.output


def test_the_gguf_example_and_old_names_work() -> None:
    query = ["predict", "--gpu", "rtx-3090", "--model", "llama-3-8b", "--engine", "llama.cpp",
             "--prompt", "4096", "--format", "json"]  # fmt: skip
    for precision in ("q4_k_m", "int4", "int8", "fp16"):
        result = runner.invoke(app, [*query, "--precision", precision])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["precision"] == precision


def test_help_lists_every_jsonl_key_and_its_example_works() -> None:
    result = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "300"})
    text = " ".join(result.output.replace("│", " ").split())
    for key in ("gpu", "model", "precision", "ttftSlo?", "itlSlo?", "kvCacheFp8?", "hostFactor?"):
        assert key in text, key
    example = text.split("e.g. ", 1)[1].split("}", 1)[0] + "}"
    answer = runner.invoke(app, ["predict", "--input", "-"], input=example + "\n")
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["batch"] == 8
