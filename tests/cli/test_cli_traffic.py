"""``gridplace traffic fit``: a trace in, a traffic block out that the workload schema accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.specs.workload import Traffic

runner = CliRunner()


def write_trace(path: Path, times_s: np.ndarray, prompt: int = 800, output: int = 120) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"{t:.4f},{prompt + i % 3},{output}" for i, t in enumerate(times_s)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bursty_times(rng: np.random.Generator) -> np.ndarray:
    """5 requests/s, with every tenth 10 s window at 4x."""
    parts = []
    for window in range(720):
        rate = 20.0 if window % 10 == 0 else 5.0
        parts.append(window * 10 + rng.uniform(0, 10, rng.poisson(rate * 10)))
    return np.sort(np.concatenate(parts))


def test_fit_prints_a_valid_traffic_block(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.csv", bursty_times(np.random.default_rng(1)))
    result = runner.invoke(app, ["traffic", "fit", str(trace), "--region", "eu-west"])
    assert result.exit_code == 0, result.output
    traffic = Traffic.model_validate(yaml.safe_load(result.stdout)["traffic"])
    assert abs(traffic.requests_per_second - 6.5) < 0.3  # 0.1 x 20 + 0.9 x 5
    assert (traffic.prompt_tokens, traffic.output_tokens) == (801, 120)
    assert traffic.burstiness is not None
    windows = {w.window_s: w.peak_to_mean for w in traffic.burstiness.windows}
    assert abs(windows[10.0] - 20 / 6.5) < 0.35  # the 4x windows over the 6.5/s mean
    assert "squared coefficient of variation" in result.stdout


def test_without_a_region_the_block_says_to_add_sources(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.csv", np.arange(0, 7200, 0.05))
    result = runner.invoke(app, ["traffic", "fit", str(trace), "--windows", "10,60"])
    assert result.exit_code == 0, result.output
    assert "add sources" in result.stdout
    block = yaml.safe_load(result.stdout)["traffic"]
    assert [w["windowS"] for w in block["burstiness"]["windows"]] == [10.0, 60.0]


def test_bad_input_exits_1_or_2_with_a_message(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["traffic", "fit", str(tmp_path / "none.csv")])
    assert missing.exit_code == 1 and "none.csv" in missing.stderr
    garbage = tmp_path / "g.csv"
    garbage.write_text("a,b\n1,2\n")
    assert runner.invoke(app, ["traffic", "fit", str(garbage)]).exit_code == 1
    short = write_trace(tmp_path / "s.csv", np.arange(0.0, 20.0))
    result = runner.invoke(app, ["traffic", "fit", str(short)])
    assert result.exit_code == 1 and "fit a longer trace" in result.stderr
    for bad in ("x", "0", "5,5", ",".join(["1"] * 20)):
        usage = runner.invoke(app, ["traffic", "fit", str(short), "--windows", bad])
        assert usage.exit_code == 2, bad
