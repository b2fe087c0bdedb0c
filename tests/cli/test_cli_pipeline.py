"""``gridplace plan`` on the shipped pipeline example (``examples/pipeline``): Llama 3.1 70B at
4-bit on single-GPU 24 GB nodes, placed as a pipeline in one region and refused for ITL, the
network named, over three regions 50 ms apart."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from gridplace.api.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()
PIPELINE = EXAMPLES / "pipeline"


def _inputs(grid: str) -> list[str]:
    return ["-n", str(PIPELINE / grid / "nodes.yaml"), "-w", str(PIPELINE / "workload.yaml"),
            "-p", str(PIPELINE / grid / "probes.yaml")]  # fmt: skip


def test_one_region_places_a_pipeline_and_prints_its_itl_and_throughput() -> None:
    result = runner.invoke(app, ["plan", *_inputs("one-region")])
    assert result.exit_code == 0, result.output
    placed = re.search(r"placed as (\d+) pipelines? of [\d/]+ stages: no node holds", result.stdout)
    assert placed
    found = re.findall(
        r"pipeline (\S+\[0,\d+\) > .*\[\d+,80\)): ITL ([\d.]+) ms incl", result.stdout
    )
    assert len(found) == int(placed[1]) and all(float(itl) <= 80 for _, itl in found)
    assert re.search(r"[\d.]+ req/s \(\d+ tokens/s\)", result.stdout)
    as_json = runner.invoke(app, ["plan", *_inputs("one-region"), "--format", "json"])
    plan = json.loads(as_json.stdout)
    for assignment in plan["spec"]["assignments"]:
        stages = assignment["stages"]
        assert stages[0]["node"] == assignment["node"] and stages[-1]["layers"][1] == 80
        assert assignment["predicted"]["itlMs"] <= 80


def test_three_regions_are_refused_for_itl_with_the_network_named() -> None:
    result = runner.invoke(app, ["plan", *_inputs("three-regions")])
    assert result.exit_code == 3, result.output
    text = " ".join(result.stdout.split())
    assert "[pipeline-itl]" in text
    match = re.search(r"stages over ([a-z-]+), ([a-z-]+) need (\d+) ms of network per token", text)
    assert match and int(match[3]) >= 50
    assert "> 80 ms ITL" in text
