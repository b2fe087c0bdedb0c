"""``gridplace inventory``: the fake backend's Node loads with the specs loader; stdout holds only
YAML; no GPU under ``auto`` exits 1 with a clear message; bad input exits 1 without a traceback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest
import yaml
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.hal import Telemetry, TelemetryStore
from gridplace.specs import ClaimLevel, Interconnect, load_bundle

runner = CliRunner()

FLEET = """
kind: FakeFleet
interconnect: nvlink
devices:
  - name: NVIDIA H100 80GB HBM3
    count: 8
    pciDeviceId: "0x2330"
    memoryGiB: 79.6
    memoryBusWidthBits: 5120
    maxMemoryClockMhz: 2619
    maxSmClockMhz: 1980
    pcie: {generation: 5, lanes: 16}
    computeCapability: "9.0"
    powerLimitWatts: 700
"""

MIXED_FLEET = """
kind: FakeFleet
devices:
  - {name: NVIDIA GeForce RTX 4090, pciDeviceId: "0x2684", memoryGiB: 24, count: 2}
  - {name: NVIDIA GeForce RTX 4090, pciDeviceId: "0x2684", memoryGiB: 24, lostAtMinute: 0}
  - name: Unreleased Accelerator X1
    memoryGiB: 32
    memoryBusWidthBits: 256
    maxMemoryClockMhz: 14000
    maxSmClockMhz: 2400
    computeUnits: 80
    computeCapability: "12.0"
"""


@pytest.fixture
def fleet_file(write_yaml: Callable[[str, str], Path]) -> Path:
    return write_yaml("fleet.yaml", FLEET)


def test_fake_inventory_prints_a_node_the_loader_accepts(fleet_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["inventory", "--backend", "fake", "--fake-fleet", str(fleet_file), "--name", "fra-h100-1",
         "--region", "eu-central", "--provider", "hetzner", "--price-per-hour", "18.5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    output = tmp_path / "node.yaml"
    output.write_text(result.stdout)
    bundle = load_bundle([output])
    (node,) = bundle.nodes
    assert node.name == "fra-h100-1"
    assert (node.spec.region, node.spec.provider, node.spec.price_per_hour) == (
        "eu-central",
        "hetzner",
        18.5,
    )
    assert [(g.model, g.count) for g in node.spec.gpus] == [("h100-sxm", 8)]
    assert node.spec.interconnect is Interconnect.NVLINK
    assert node.spec.claims is ClaimLevel.PROBED
    assert "placeholder" not in result.stderr  # every option was given
    assert "8 GPU(s) read through fake" in result.stderr


def test_unknown_and_lost_gpus(write_yaml: Callable[[str, str], Path], tmp_path: Path) -> None:
    fleet = write_yaml("mixed.yaml", MIXED_FLEET)
    result = runner.invoke(app, ["inventory", "--fake-fleet", str(fleet), "--name", "mixed"])
    assert result.exit_code == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ["GPUModel", "Node"]
    assert documents[0]["spec"]["derived"] is True
    output = tmp_path / "mixed-node.yaml"
    output.write_text(result.stdout)
    (node,) = load_bundle([output]).nodes
    assert [(g.model, g.count) for g in node.spec.gpus] == [
        ("rtx-4090", 2),
        ("derived-unreleased-accelerator-x1", 1),
    ]
    assert "left out GPU 2" in result.stderr
    assert "placeholder region" in result.stderr
    assert node.status is not None and node.status.healthy


def test_auto_without_a_gpu_exits_1_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # `import amdsmi` raises ImportError
    result = runner.invoke(app, ["inventory"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no GPU found on this machine" in result.stderr
    assert "nvml:" in result.stderr and "amdsmi:" in result.stderr
    assert "--fake-fleet" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_fake_backend_needs_a_fleet_file() -> None:
    result = runner.invoke(app, ["inventory", "--backend", "fake"])
    assert result.exit_code == 2


def test_invalid_fleet_exits_1_naming_the_field(write_yaml: Callable[[str, str], Path]) -> None:
    fleet = write_yaml("bad.yaml", "kind: FakeFleet\ndevices:\n  - {name: x, memoryGib: 8}\n")
    result = runner.invoke(app, ["inventory", "--fake-fleet", str(fleet)])
    assert result.exit_code == 1
    assert "memoryGib" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_invalid_name_exits_1(fleet_file: Path) -> None:
    result = runner.invoke(app, ["inventory", "--fake-fleet", str(fleet_file), "--name", "Box 1"])
    assert result.exit_code == 1
    assert "name" in result.stderr


def test_benchmark_on_fake_devices_says_it_cannot(fleet_file: Path) -> None:
    result = runner.invoke(app, ["inventory", "--fake-fleet", str(fleet_file), "--benchmark"])
    assert result.exit_code == 0
    assert "cannot be measured" in result.stderr
    assert "claims: probed" in result.stdout


def test_telemetry_history_fills_status_thermal(fleet_file: Path, tmp_path: Path) -> None:
    database = tmp_path / "telemetry.sqlite"
    now_s = time.time()
    with TelemetryStore(path=database) as store:
        store.add(
            Telemetry(0, now_s - 60 * i, temperature_c=60 + i % 10, thermal_throttled=i % 4 == 0)
            for i in range(120)
        )
    result = runner.invoke(
        app, ["inventory", "--fake-fleet", str(fleet_file), "--telemetry-db", str(database)]
    )
    assert result.exit_code == 0, result.stderr
    (node,) = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "Node"]
    thermal = node["status"]["thermal"]
    assert thermal["throttleRatio"] == pytest.approx(30 / 120)
    assert thermal["p95TemperatureC"] == 69
    assert 0 <= thermal["forecastThrottleRatio"] <= 1


def test_missing_telemetry_history_exits_1(fleet_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["inventory", "--fake-fleet", str(fleet_file), "--telemetry-db", str(tmp_path / "no.db")],
    )
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
