"""``gridplace diff`` against files (``--previous PLAN -n -w``): each kind of change reads right
and exits as ``--fail-on`` says. The ``--api`` form runs against a served grid in
``tests/api/test_ci_examples.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.api.diff import FailOn, FailOnError
from tests.api.conftest import node_doc, to_yaml, workload_doc

runner = CliRunner()
FAST = ["--time-limit", "3"]
NODES = [("ams-4090-a", "rtx-4090"), ("ams-4090-b", "rtx-4090"), ("fra-l40s-a", "l40s"),
         ("lis-3090-a", "rtx-3090")]  # fmt: skip


def chat(**changes: Any) -> dict[str, Any]:
    return workload_doc("chat", rps=4, **changes)


def batch() -> dict[str, Any]:
    return workload_doc("batch", model="qwen2.5-7b", rps=1, ttft_ms=5000)


def impossible() -> dict[str, Any]:
    return workload_doc("impossible", itl_ms=1)


def write(directory: Path, *documents: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "workloads.yaml").write_text(to_yaml(*documents))
    return directory


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with nodes.yaml and plan.yaml: chat and batch planned on four nodes."""
    root = tmp_path_factory.mktemp("grid")
    (root / "nodes.yaml").write_text(to_yaml(*[node_doc(n, gpu=g) for n, g in NODES]))
    workloads = write(root / "base", chat(), batch())
    args = ["plan", "-n", str(root / "nodes.yaml"), "-w", str(workloads), *FAST]
    result = runner.invoke(app, [*args, "-o", str(root / "plan.yaml"), "--format", "json"])
    assert result.exit_code == 0, result.output
    return root


def diff(grid: Path, workloads: Path, *args: str) -> tuple[int, str]:
    command = ["diff", "--previous", str(grid / "plan.yaml"), "-n", str(grid / "nodes.yaml")]
    result = runner.invoke(app, [*command, "-w", str(workloads), *FAST, *args])
    return result.exit_code, result.stdout


def diff_json(grid: Path, workloads: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = diff(grid, workloads, "--format", "json", *args)
    return code, json.loads(out)


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in body["workloads"]}


ALL_RULES = "--fail-on=unplaced,slo,cost-increase=0%"


def test_an_unchanged_directory_diffs_empty_and_exits_0(grid: Path) -> None:
    code, body = diff_json(grid, grid / "base", ALL_RULES)
    assert code == 0 and body["empty"] is True and body["failures"] == []
    assert body["workloads"] == [] and body["unchanged"] == ["batch", "chat"]
    assert body["costPerHour"]["delta"] == 0 and body["baseGeneration"] == 1
    code, text = diff(grid, grid / "base", ALL_RULES)
    assert code == 0 and text.startswith("no change against generation 1: 2 workloads")


def test_a_tighter_slo_reads_as_a_change_and_fails_only_the_cost_rule(
    grid: Path, tmp_path: Path
) -> None:
    workloads = write(tmp_path, chat(itl_ms=40), batch())
    code, body = diff_json(grid, workloads, "--fail-on", "unplaced,slo")
    assert code == 0, body["failures"]
    changed = by_name(body)["chat"]
    assert changed["change"] == "changed" and changed["sloItlMs"] == 40
    assert changed["after"]["itlMs"] <= 40 < changed["before"]["itlMs"]
    assert changed["after"]["sloMet"] and changed["moved"] + changed["removed"]
    rising = body["costPerHour"]["after"] > body["costPerHour"]["before"]
    code, body = diff_json(grid, workloads, "--fail-on", "cost-increase=0%")
    assert (code == 3) == rising and (code == 3) == bool(body["failures"])
    code, _ = diff_json(grid, workloads, "--fail-on", "cost-increase=1000%")
    assert code == 0


def test_an_added_workload_gets_replicas(grid: Path, tmp_path: Path) -> None:
    workloads = write(tmp_path, chat(), batch(), workload_doc("extra", rps=1))
    code, body = diff_json(grid, workloads, "--fail-on", "unplaced,slo")
    assert code == 0
    added = by_name(body)["extra"]
    assert added["change"] == "added" and added["before"] is None
    assert len(added["added"]) == added["after"]["replicas"] >= 1 and added["after"]["sloMet"]
    assert body["costPerHour"]["delta"] == pytest.approx(added["after"]["costPerHour"], abs=0.02)


def test_a_removed_workload_stops_its_replicas(grid: Path, tmp_path: Path) -> None:
    code, body = diff_json(grid, write(tmp_path, chat()), ALL_RULES)
    assert code == 0, body["failures"]  # cheaper: no rule fails
    removed = by_name(body)["batch"]
    assert removed["change"] == "removed" and removed["after"] is None
    assert len(removed["removed"]) == removed["before"]["replicas"] >= 1
    assert body["costPerHour"]["delta"] < 0
    code, text = diff(grid, write(tmp_path, chat()))
    assert "removed: its replicas stop" in text


def test_an_impossible_workload_is_unplaced_with_reasons_and_fails_on_unplaced(
    grid: Path, tmp_path: Path
) -> None:
    workloads = write(tmp_path, chat(), batch(), impossible())
    code, body = diff_json(grid, workloads)
    assert code == 0  # no --fail-on: the diff informs, it does not gate
    unplaced = by_name(body)["impossible"]
    assert unplaced["change"] == "added" and unplaced["after"]["replicas"] == 0
    assert any("ITL" in reason for reason in unplaced["after"]["unplaced"])
    code, body = diff_json(grid, workloads, "--fail-on", "unplaced")
    assert code == 3 and body["failures"] == ["impossible would not be (fully) placed"]
    code, body = diff_json(grid, workloads, "--fail-on", "slo")
    assert code == 3 and body["failures"] == ["impossible would miss its SLO"]
    code, text = diff(grid, workloads, "--format", "markdown", "--fail-on", "unplaced")
    assert code == 3 and text.startswith("### gridplace diff")
    assert "| impossible | added (unplaced) |" in text and "**Fails:**" in text


def test_a_workload_unplaced_before_and_after_is_no_failure(tmp_path: Path, grid: Path) -> None:
    workloads = write(tmp_path / "w", chat(), impossible())
    plan = tmp_path / "plan.yaml"
    args = ["plan", "-n", str(grid / "nodes.yaml"), "-w", str(workloads), *FAST, "-o", str(plan)]
    assert runner.invoke(app, args).exit_code == 3  # unplaced, plan written
    command = ["diff", "--previous", str(plan), "-n", str(grid / "nodes.yaml"), "-w"]
    result = runner.invoke(app, [*command, str(workloads), *FAST, ALL_RULES])
    assert result.exit_code == 0 and result.stdout.startswith("no change"), result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-on", "unplaced,fast"], "unknown rule 'fast'"),
        (["--fail-on", "cost-increase=lots"], "expected a percentage"),
        ([], "either --api URL or --previous PLAN"),
        (["--api", "http://127.0.0.1:9", "-n", "nodes.yaml"], "drop -n/-p"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, grid: Path) -> None:
    result = runner.invoke(app, ["diff", "-w", str(grid / "base"), *args])
    assert result.exit_code == 2 and message in result.output


def test_fail_on_rules_parse() -> None:
    assert FailOn.parse("") == FailOn()
    assert FailOn.parse("unplaced, slo,cost-increase=12.5%") == FailOn(True, True, 0.125)
    assert FailOn.parse("cost-increase=10").cost_increase_ratio == pytest.approx(0.1)
    with pytest.raises(FailOnError):
        FailOn.parse("cost-increase=-5%")


def test_api_problems_exit_1_with_a_message(grid: Path) -> None:
    args = ["diff", "--api", "http://127.0.0.1:9", "-w", str(grid / "base")]
    result = runner.invoke(app, args, env={"GRIDPLACE_TOKEN": ""})
    assert result.exit_code == 1 and "no token: set GRIDPLACE_TOKEN" in result.output
    result = runner.invoke(app, args, env={"GRIDPLACE_TOKEN": "gpv.x.y"})
    assert result.exit_code == 1 and "http://127.0.0.1:9/v1/plans" in result.output
    assert "Traceback" not in result.output
