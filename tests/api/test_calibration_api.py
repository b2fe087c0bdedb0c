"""Recalibration on the server: observations -> stored corrections -> a replan whose plan carries
them; no replan for the same calibration again or for moves inside the band; the CLI shows it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.api.commands import calibration as calibration_command
from gridplace.planner.recalibrate import ModelOracle, corrected
from gridplace.specs import Node, ObservationWindow, builtin_catalog
from tests.api.conftest import (
    ADMIN,
    TestClient,
    node_doc,
    node_token,
    register,
    submit,
    workload_doc,
)
from tests.api.test_replan import check

TRUE_DECODE, TRUE_PREFILL = 1.5, 1.3


def windows_for(node: str, count: int, start_s: float, decode: float = TRUE_DECODE) -> list[Any]:
    """Windows of a replica whose steps are ``decode`` / ``TRUE_PREFILL`` x the model's."""
    base = ObservationWindow(
        node=node, workload="chat", model="llama-3.1-8b", gpu="rtx-4090", precision="fp8",
        engine="vllm", start_s=0.0, end_s=60.0, requests=100, prompt_tokens=50_000,
        output_tokens=20_000, decode_steps=2_000, mean_running_batch=10, mean_context_tokens=600,
    )  # type: ignore[arg-type]  # fmt: skip
    node_spec = Node.model_validate(node_doc(node))
    model = ModelOracle([node_spec], builtin_catalog())(base)
    assert model is not None
    overhead = model.step_overhead_ms  # the factors scale the GPU part of a step
    decode_s = 2_000 * corrected(model.decode_ms(10, 600), overhead, decode) / 1000
    prefill_s = 100 * corrected(model.prefill_ms(1, 500), overhead, TRUE_PREFILL) / 1000
    return [
        base.model_copy(
            update={"start_s": start_s + 60 * i, "end_s": start_s + 60 * (i + 1),
                    "decode_seconds": decode_s, "prefill_seconds": prefill_s}
        ).to_yaml_dict()
        for i in range(count)
    ]  # fmt: skip


def post(client: TestClient, node: str, windows: list[Any]) -> None:
    document = {"apiVersion": "gridplace/v1alpha1", "kind": "Observations",
                "metadata": {"name": "obs"}, "spec": {"windows": windows}}  # fmt: skip
    response = client.post(f"/v1/nodes/{node}/observations", json=document, headers=ADMIN)
    assert response.status_code == 200, response.text


def test_observations_recalibrate_replan_and_stay_put_inside_the_band(client: TestClient) -> None:
    for i in range(4):
        register(client, node_doc(f"n{i}"))
    first = submit(client, workload_doc("chat", rps=4, replicas=(1, 4), precisions=("fp8",)))
    assert "calibration" not in first["metadata"].get("labels", {})
    assert client.get("/v1/calibration", headers=ADMIN).status_code == 404
    placed = sorted({a["node"] for a in first["spec"]["assignments"]})
    for node in placed:
        post(client, node, windows_for(node, 40, 1_000.0))
    outcome = check(client)
    assert outcome["replanned"], outcome
    assert any("calibration moves" in r for r in outcome["reasons"])
    shown = client.get("/v1/calibration", headers=ADMIN).json()
    (gpu_type,) = shown["gpuTypes"]
    assert gpu_type["decodeFactor"] == pytest.approx(TRUE_DECODE, rel=0.03)
    assert gpu_type["prefillFactor"] == pytest.approx(TRUE_PREFILL, rel=0.03)
    assert {n["node"] for n in shown["nodes"]} == set(placed)
    plan = outcome["plan"]
    assert plan["metadata"]["labels"]["calibration"] == str(shown["id"])
    # The planner booked the correction: more replicas (or capacity) for the slower steps.
    assert plan["status"]["workloads"][0]["capacityRps"] >= 4
    assert not check(client)["replanned"]  # the same calibration: nothing to do
    for node in placed:  # more of the same evidence: the estimate moves inside the band
        post(client, node, windows_for(node, 5, 10_000.0))
    again = check(client)
    assert not again["replanned"], again
    assert client.get("/v1/calibration", headers=ADMIN).json()["id"] != shown["id"]
    token = node_token(client, placed[0])
    assert client.get("/v1/calibration", headers=token).status_code == 403


def test_the_cli_shows_the_calibration(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    register(client, node_doc("n0"))
    post(client, "n0", windows_for("n0", 10, 0.0))

    class Borrowed:  # the app's test client, left open for the next invocation
        get = client.get

        def close(self) -> None:
            pass

    monkeypatch.setattr(calibration_command, "make_client", lambda api: Borrowed())
    runner = CliRunner()
    args = ["calibration", "--api", "http://testserver", "--token", ADMIN["Authorization"][7:]]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "rtx-4090" in table.stdout and "(type)" in table.stdout and "n0" in table.stdout
    shown = runner.invoke(app, [*args, "--format", "json"])
    assert json.loads(shown.stdout)["gpuTypes"][0]["decodeFactor"] > 1.2
    refused = runner.invoke(app, [*args[:-1], "wrong-token"])
    assert refused.exit_code == 1 and "401" in refused.output
