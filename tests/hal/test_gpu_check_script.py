"""``bench/gpu_check.py`` end to end on scripted NVML devices: every section prints, a missing
field prints as '-', and the exit code says whether a device was read."""

from __future__ import annotations

import os
import subprocess
import sys

import pynvml
import pytest

from tests.bench_scripts import load_bench
from tests.conftest import REPO_ROOT
from tests.hal.nvml_fakes import ScriptedNvml, h100_sxm, rtx_3090_reporting_little


def test_gpu_check_prints_every_section(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ScriptedNvml(monkeypatch, [h100_sxm(0x18), rtx_3090_reporting_little()])
    script = load_bench("gpu_check")
    monkeypatch.setattr(script.time, "sleep", lambda seconds: None)
    assert script.main(["--no-benchmark", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "read 2 GPU(s) through NVML" in out
    assert "GPU 0 (NVIDIA H100 80GB HBM3): every HAL field" in out
    assert "bandwidth GB/s (bus x clock)" in out and "3,352.3" in out
    assert "h100-sxm (matched by pci-id)" in out
    assert "rtx-3090 (matched by name)" in out
    assert "memory_bus_width_bits" in out and "FAILED" not in out
    assert "kind: Node" in out


def test_gpu_check_exits_1_without_nvml(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    assert load_bench("gpu_check").main(["--no-benchmark"]) == 1
    assert "NVML cannot start here" in capsys.readouterr().out


def test_script_needs_only_pynvml_pyyaml_and_pydantic() -> None:
    # The lead runs it as `PYTHONPATH=. python3 bench/gpu_check.py` on a machine where gridplace
    # is not installed: importing it must not pull in the CLI or planner stack.
    probe = (
        "import runpy, sys; sys.argv = ['gpu_check', '--help']\n"
        "try:\n    runpy.run_path('bench/gpu_check.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = {'typer', 'rich', 'networkx', 'ortools', 'fastapi', 'sqlalchemy', 'numpy'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.stdout.strip().splitlines()[-1] == "[]"
