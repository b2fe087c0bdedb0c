"""The foundation's commands: validate (text, json, junit), schema and catalog, with exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from gridplace.api.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()
EXAMPLE_ARGS = [
    "-n", str(EXAMPLES / "grid"),
    "-w", str(EXAMPLES / "workloads"),
    "-p", str(EXAMPLES / "probes"),
]  # fmt: skip


def test_validate_the_shipped_example_exits_0() -> None:
    result = runner.invoke(app, ["validate", *EXAMPLE_ARGS])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


@pytest.fixture
def broken_example(tmp_path: Path) -> Path:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    workloads = copy / "workloads" / "workloads.yaml"
    text = workloads.read_text()
    assert "requestsPerSecond:" in text
    workloads.write_text(text.replace("requestsPerSecond:", "requestsPerSec:", 1))
    return copy


def test_validate_a_broken_copy_exits_1_naming_file_and_field(broken_example: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridplace.api.cli", "validate",
         "-n", str(broken_example / "grid"), "-w", str(broken_example / "workloads")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "workloads.yaml" in result.stderr
    assert "spec.traffic.requestsPerSec" in result.stderr
    assert "spec.traffic.requestsPerSecond" in result.stderr  # the missing one is named too


def test_validate_json_and_junit_formats(broken_example: Path) -> None:
    args = ["-n", str(broken_example / "grid"), "-w", str(broken_example / "workloads")]
    as_json = runner.invoke(app, ["validate", *args, "--format", "json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    assert any(i["field"] == "spec.traffic.requestsPerSec" for i in report["issues"])
    junit = runner.invoke(app, ["validate", *args, "--format", "junit"])
    assert junit.exit_code == 1
    root = ElementTree.fromstring(junit.stdout.split("\n", 1)[1])
    assert int(root.attrib["failures"]) >= 1
    ok = runner.invoke(app, ["validate", *EXAMPLE_ARGS, "--format", "junit"])
    assert ok.exit_code == 0
    assert ElementTree.fromstring(ok.stdout.split("\n", 1)[1]).attrib["failures"] == "0"


def test_validate_reports_a_workload_no_node_can_hold(tmp_path: Path) -> None:
    from tests.specs import documents

    (tmp_path / "n.yaml").write_text(documents.NODE)
    big = documents.WORKLOAD.replace("llama-3.1-8b", "llama-3.1-405b").replace(
        "[bf16, fp8, int4]", "[bf16]"
    )
    (tmp_path / "w.yaml").write_text(big)
    result = runner.invoke(app, ["validate", "-n", str(tmp_path / "n.yaml"), "-w",
                                 str(tmp_path / "w.yaml"), "--format", "json"])  # fmt: skip
    assert result.exit_code == 1
    (workload,) = json.loads(result.stdout)["workloads"]
    assert workload["placeable"] is False
    summary = workload["reasons"][0]
    assert summary.startswith("0/1 nodes can serve chat-8b: 1 too little VRAM [vram-per-gpu]"), (
        summary
    )
    assert "needs" in summary and "GiB per GPU, has 24.0" in summary
    # The hint is a fix that was tried: nodes of a catalog GPU that hold it (#23).
    assert any(r.startswith("hint: add ") and "tried: placed" in r for r in workload["reasons"])


def test_usage_errors_exit_2() -> None:
    assert runner.invoke(app, ["validate"]).exit_code == 2
    assert runner.invoke(app, ["catalog", "pizzas"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_schema_prints_json_schema_and_rejects_unknown_kinds() -> None:
    result = runner.invoke(app, ["schema", "InferenceWorkload"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "spec" in schema["properties"]
    assert "requestsPerSecond" in json.dumps(schema)
    bad = runner.invoke(app, ["schema", "Pod"])
    assert bad.exit_code == 1 and "kinds are" in bad.stderr


@pytest.mark.parametrize(("what", "expected"), [("gpus", "rtx-4090"), ("models", "llama-3.1-8b")])
def test_catalog_lists_entries(what: str, expected: str) -> None:
    table = runner.invoke(app, ["catalog", what])
    assert table.exit_code == 0 and expected in table.stdout
    as_json = json.loads(runner.invoke(app, ["catalog", what, "--format", "json"]).stdout)
    assert expected in as_json
