"""``gridplace plan --shards K`` on a small generated grid: a valid plan (exit 0) that says it
was sharded, per-shard times on stderr; ``auto`` plans a small grid whole; bad combinations are
exit 1 naming the flag, a bad count a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.api.wiring import latency_for
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.oracle import validate_plan
from gridplace.planner.predictor import make_predictor
from gridplace.specs import PlacementPlan, load_bundle
from tests.api.conftest import node_doc, workload_doc

runner = CliRunner()
FAST = ["--time-limit", "3"]


@pytest.fixture
def grid(tmp_path: Path) -> list[str]:
    """Six one-GPU providers and three workloads, generated."""
    gpus = ["rtx-4090", "l40s", "rtx-3090"]
    nodes = [node_doc(f"n{i}", gpu=gpus[i % 3], price=0.4 + 0.05 * i) for i in range(6)]
    workloads = [workload_doc(f"w{i}", rps=2 + i) for i in range(3)]
    (tmp_path / "nodes.yaml").write_text(yaml.safe_dump_all(nodes), encoding="utf-8")
    (tmp_path / "workloads.yaml").write_text(yaml.safe_dump_all(workloads), encoding="utf-8")
    return ["-n", str(tmp_path / "nodes.yaml"), "-w", str(tmp_path / "workloads.yaml")]


def test_plan_in_two_shards_is_a_valid_plan_that_says_so(grid: list[str], tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["plan", *grid, *FAST, "--shards", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "planned in 2 shards" in result.stdout and "(2 shards)" in result.stdout
    table = result.stderr[result.stderr.index("shards") :]  # per-shard times, on stderr
    assert "compile" in table and "solve" in table and "│ 1 " in table
    plan = PlacementPlan.model_validate(yaml.safe_load(out.read_text(encoding="utf-8")))
    assert plan.status is not None and plan.status.unplaced == []
    # the plan is valid on the whole grid's own problem (every replica an option there)
    bundle = load_bundle([Path(grid[1]), Path(grid[3])])
    inputs = PlannerInputs(bundle.nodes, bundle.workloads, bundle.catalog)
    whole = compile_problem(inputs, make_predictor(), latency_for(bundle)(bundle.nodes))
    bare = plan.model_copy(update={"status": None})
    assert validate_plan(whole, bare) == []


def test_shards_auto_plans_a_small_grid_whole(grid: list[str]) -> None:
    whole = runner.invoke(app, ["plan", *grid, *FAST, "--format", "json"])
    auto = runner.invoke(app, ["plan", *grid, *FAST, "--format", "json", "--shards", "auto"])
    assert whole.exit_code == auto.exit_code == 0, auto.output
    assert json.loads(auto.stdout)["spec"] == json.loads(whole.stdout)["spec"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--budget", "10"], "--budget"),
        (["--strategy", "greedy"], "cpsat"),
    ],
)
def test_what_shards_cannot_do_is_exit_1_naming_the_flag(
    grid: list[str], flags: list[str], words: str
) -> None:
    result = runner.invoke(app, ["plan", *grid, *FAST, "--shards", "2", *flags])
    assert result.exit_code == 1, result.output
    assert words in result.stderr and "--shards" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["0", "65", "two", "-1"])
def test_a_bad_shard_count_is_a_usage_error(grid: list[str], value: str) -> None:
    result = runner.invoke(app, ["plan", *grid, "--shards", value])
    assert result.exit_code == 2 and "--shards" in result.stderr


def test_shards_on_local_processes_and_on_ray_give_the_same_plan(grid: list[str]) -> None:
    args = ["plan", *grid, *FAST, "--format", "json", "--shards", "2"]
    here = runner.invoke(app, args)
    apart = runner.invoke(app, [*args, "--workers", "2"])
    assert here.exit_code == apart.exit_code == 0, apart.output
    assert json.loads(apart.stdout)["spec"] == json.loads(here.stdout)["spec"]
    ray = pytest.importorskip("ray")
    try:
        on_ray = runner.invoke(app, [*args, "--ray-address", "local"])
    finally:
        ray.shutdown()
    assert on_ray.exit_code == 0, on_ray.output
    assert json.loads(on_ray.stdout)["spec"] == json.loads(here.stdout)["spec"]
