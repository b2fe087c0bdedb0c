"""The CI examples (``examples/ci/``) run as written against a real ``gridplace serve`` on
loopback with the example grid registered and planned, holding only a viewer token: their
``gridplace`` commands pass on the unchanged workloads and fail on a change that cannot be
placed. ``validate --api`` agrees with ``validate`` on files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from gridplace.api.cli import app
from tests.api.conftest import to_yaml, workload_doc
from tests.api.test_serve import clean_environment, free_port, wait_for_health
from tests.conftest import EXAMPLES

ADMIN_TOKEN = "ci-example-admin-token-0123456789"
CI = EXAMPLES / "ci"
# The dry runs solve with the stored plan's options, as a replan would. Greedy is a fixed point
# (the same inputs on the same grid give the same plan on a machine under any load); a CP-SAT
# plan cut short by its time limit may rightly diff non-empty: the next solve finds savings.
PLAN_OPTIONS = "strategy=greedy"
BIN = Path(sys.executable).parent  # where the installed `gridplace` script is
runner = CliRunner()


@dataclass(frozen=True)
class Served:
    url: str
    viewer_token: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The example grid, its probes and a plan of its workloads on a served API."""
    directory = tmp_path_factory.mktemp("served")
    port = free_port()
    env = clean_environment() | {
        "GRIDPLACE_ADMIN_TOKEN": ADMIN_TOKEN,
        "GRIDPLACE_DATABASE_URL": f"sqlite:///{directory / 'grid.db'}",
        "GRIDPLACE_REPLAN_INTERVAL_S": "0",
        "GRIDPLACE_SOLVE_IN_SUBPROCESS": "false",
    }
    with (directory / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gridplace.api.cli", "serve", "--port", str(port),
             "--log-level", "warning"],
            cwd=directory, env=env, stdout=log, stderr=log, text=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
        yield Served(url, _load_example_grid(url))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _load_example_grid(url: str) -> str:
    """Register the nodes, post the probes, plan the workloads; a viewer token for CI."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/yaml"}
    with httpx.Client(base_url=url, headers=admin, timeout=120) as client:
        plans = f"/v1/plans?{PLAN_OPTIONS}"
        for path, body in [
            ("/v1/nodes", EXAMPLES / "grid" / "nodes.yaml"),
            ("/v1/probes", EXAMPLES / "probes" / "probes.yaml"),
            (plans, EXAMPLES / "workloads" / "workloads.yaml"),
        ]:
            response = client.post(path, content=body.read_bytes())
            assert response.status_code == 200, response.text
        issued = client.post("/v1/admin/viewers/ci/tokens")
        assert issued.status_code == 201, issued.text
        token: str = issued.json()["token"]
        return token


def ci_commands(example: str) -> list[str]:
    """The ``gridplace`` commands of a CI example, as written there."""
    document = yaml.safe_load((CI / example).read_text())
    if example == "github-actions.yml":
        lines = [step.get("run", "") for job in document["jobs"].values() for step in job["steps"]]
    else:
        lines = [line for job in document.values() for line in job.get("script", [])]
    commands = [line for line in lines if line.startswith("gridplace ")]
    assert [c.split()[1] for c in commands] == ["validate", "diff"], commands
    return commands


def run_ci(command: str, served: Served, workloads: Path, cwd: Path) -> int:
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(cwd)}
    env |= {"GRIDPLACE_API": served.url, "GRIDPLACE_TOKEN": served.viewer_token}
    env |= {"WORKLOADS": str(workloads)}
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, "-c", command], cwd=cwd, env=env, timeout=300)
    return done.returncode


@pytest.mark.parametrize("example", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_ci_example_passes_on_unchanged_workloads(
    example: str, served: Served, tmp_path: Path
) -> None:
    for command in ci_commands(example):
        assert run_ci(command, served, EXAMPLES / "workloads", tmp_path) == 0, command
    report = ElementTree.parse(tmp_path / "gridplace-validate.xml").getroot()
    assert report.get("failures") == "0" and report.get("tests") == "10"
    comment = (tmp_path / "gridplace-diff.md").read_text()
    assert comment.startswith("### gridplace diff")
    assert "no change against generation 1: 9 workloads as they are" in comment


def test_the_ci_example_fails_a_change_that_cannot_be_placed(
    served: Served, tmp_path: Path
) -> None:
    workloads = tmp_path / "workloads"
    shutil.copytree(EXAMPLES / "workloads", workloads)
    (workloads / "new.yaml").write_text(to_yaml(workload_doc("instant", ttft_ms=1, itl_ms=1)))
    validate, diff = ci_commands("gitlab-ci.yml")
    assert run_ci(validate, served, workloads, tmp_path) == 1
    assert run_ci(diff, served, workloads, tmp_path) == 3
    comment = (tmp_path / "gridplace-diff.md").read_text()
    assert "instant would not be (fully) placed" in comment
    assert "| instant | added (unplaced) |" in comment


def test_validate_api_agrees_with_validate_on_files(served: Served, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(served.viewer_token + "\n")
    workloads = tmp_path / "workloads"
    shutil.copytree(EXAMPLES / "workloads", workloads)
    (workloads / "new.yaml").write_text(to_yaml(workload_doc("instant", ttft_ms=1, itl_ms=1)))
    for directory in (EXAMPLES / "workloads", workloads):
        files = ["-n", str(EXAMPLES / "grid"), "-p", str(EXAMPLES / "probes")]
        local = runner.invoke(app, ["validate", *files, "-w", str(directory), "--format", "json"])
        remote_args = ["--api", served.url, "--token-file", str(token_file)]
        remote = runner.invoke(
            app, ["validate", *remote_args, "-w", str(directory), "--format", "json"]
        )
        assert remote.exit_code == local.exit_code, remote.output
        assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert local.exit_code == 1 and not json.loads(local.stdout)["valid"]


def test_validate_api_reports_a_refused_token_without_a_traceback(served: Served) -> None:
    result = runner.invoke(
        app,
        ["validate", "--api", served.url, "-w", str(EXAMPLES / "workloads")],
        env={"GRIDPLACE_TOKEN": "gpv.0123456789abcdef.not-the-secret"},
    )
    assert result.exit_code == 1 and "HTTP 401" in result.output
    assert "Traceback" not in result.output
