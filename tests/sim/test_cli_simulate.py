"""``gridplace simulate`` end to end on a tiny grid written here."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gridplace.api.cli import app
from tests.sim.fixtures import node, plan, workload, write_documents

runner = CliRunner()


def _files(tmp_path: Path, *assignments: dict[str, object]) -> list[str]:
    nodes = write_documents(tmp_path / "nodes.yaml", [node("a", "rtx-4090", 2), node("b", "l40s")])
    workloads = write_documents(tmp_path / "workloads.yaml", [workload("chat", rps=2.0)])
    plans = write_documents(tmp_path / "plan.yaml", [plan(*assignments)])
    return ["--plan", str(plans), "-n", str(nodes), "-w", str(workloads)]


def test_json_output_per_workload_and_a_plot(tmp_path: Path) -> None:
    args = _files(
        tmp_path,
        {"workload": "chat", "node": "a", "gpus": [0]},
        {"workload": "chat", "node": "b", "gpus": [0]},
    )
    png = tmp_path / "cdf.png"
    result = runner.invoke(
        app, ["simulate", *args, "--duration", "60", "--format", "json", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (chat,) = report["workloads"]
    assert chat["workload"] == "chat"
    assert chat["requests"] > 60
    assert 0.0 <= chat["slaAttainment"] <= 1.0
    assert chat["replicas"] == 2
    assert chat["costPerHour"] == 0.5 / 2 + 0.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_output(tmp_path: Path) -> None:
    args = _files(tmp_path, {"workload": "chat", "node": "a", "gpus": [1]})
    result = runner.invoke(app, ["simulate", *args, "--duration", "30", "--arrivals", "bursty"])
    assert result.exit_code == 0, result.output
    assert "chat" in result.stdout and "in SLA" in result.stdout


def test_a_plan_with_a_missing_node_exits_1_naming_the_assignment(tmp_path: Path) -> None:
    args = _files(
        tmp_path,
        {"workload": "chat", "node": "a", "gpus": [0]},
        {"workload": "chat", "node": "gone", "gpus": [0]},
    )
    result = runner.invoke(app, ["simulate", *args, "--duration", "10"])
    assert result.exit_code == 1
    assert "assignment 1 (chat on gone:0)" in result.output
    assert "node 'gone'" in result.output
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    args = _files(tmp_path, {"workload": "chat", "node": "a", "gpus": [0]})
    result = runner.invoke(app, ["simulate", *args, "--arrivals", "trace"])
    assert result.exit_code == 2


def test_an_unreadable_trace_exits_1(tmp_path: Path) -> None:
    args = _files(tmp_path, {"workload": "chat", "node": "a", "gpus": [0]})
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n")
    result = runner.invoke(app, ["simulate", *args, "--trace", str(trace)])
    assert result.exit_code == 1
    assert "trace.csv:2" in result.output


def test_diurnal_and_cold_starts_are_reported(tmp_path: Path) -> None:
    args = _files(tmp_path, {"workload": "chat", "node": "a", "gpus": [0]})
    result = runner.invoke(
        app,
        ["simulate", *args, "--duration", "3600", "--format", "json", "--diurnal", "24",
         "--cold-starts", "--failure-rate", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["coldStarts"]["count"] >= 1  # its node fails and is back (repairs: 30 min)
    assert report["coldStarts"]["maxRecoveryS"] > 0
    flat = runner.invoke(app, ["simulate", *args, "--duration", "120", "--format", "json"])
    assert "coldStarts" not in json.loads(flat.stdout)


def test_a_named_trace_that_is_not_there_exits_1(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("GRIDPLACE_TRACES", str(tmp_path))
    args = _files(tmp_path, {"workload": "chat", "node": "a", "gpus": [0]})
    result = runner.invoke(app, ["simulate", *args, "--trace", "code", "--duration", "10"])
    assert result.exit_code == 1
    assert "AzureLLMInferenceTrace_code.csv" in result.stderr
