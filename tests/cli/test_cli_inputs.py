"""Issue 14, item 6: inputs that mean nothing are refused, naming what was read and skipped."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gridplace.api.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()
NODES = ["-n", str(EXAMPLES / "grid")]
PROBES = ["-p", str(EXAMPLES / "probes")]


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_an_empty_workloads_directory_is_exit_1(command: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [command, *NODES, "-w", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "no InferenceWorkload document" in result.output
    assert "nodes.yaml (104 documents)" in result.output


def test_skipped_files_are_named_not_skipped_silently(tmp_path: Path) -> None:
    (tmp_path / "workloads.txt").write_text("kind: InferenceWorkload\n")
    (tmp_path / "empty.yaml").write_text("")
    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would block: it must be skipped, and said
    result = runner.invoke(app, ["validate", *NODES, "-w", str(tmp_path)])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert f"{tmp_path / 'empty.yaml'} (empty)" in output
    assert f"{tmp_path / 'workloads.txt'} (not .yaml/.yml)" in output
    assert f"{tmp_path / 'pipe.yaml'} (not a regular file)" in output


def test_no_node_is_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["validate", "-n", str(tmp_path), "-w", str(EXAMPLES / "workloads")]
    )
    assert result.exit_code == 1 and "no Node document" in result.output


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_an_unknown_traffic_region_is_an_error_with_a_suggestion(
    command: str, tmp_path: Path
) -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / "workloads" / "workloads.yaml").read_text()))
    documents[0]["spec"]["traffic"]["sources"][0]["region"] = "eu-wset"
    documents[1]["spec"]["traffic"]["sources"][0]["region"] = "mars-1"
    workloads = tmp_path / "workloads.yaml"
    workloads.write_text(yaml.safe_dump_all(documents))
    result = runner.invoke(app, [command, *NODES, "-w", str(workloads), *PROBES])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "traffic region 'eu-wset'" in output and "did you mean: eu-west" in output
    assert "traffic region 'mars-1'" in output and "spec.traffic.sources[0].region" in output


def test_a_file_given_twice_is_read_once(tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    shutil.copytree(EXAMPLES / "grid", grid)
    result = runner.invoke(
        app,
        ["validate", "-n", str(grid), "-n", str(grid / "nodes.yaml"), "-w", str(grid),
         "-w", str(EXAMPLES / "workloads"), *PROBES],
    )  # fmt: skip
    assert "defined twice" not in result.output
    assert result.exit_code == 0, result.output
