"""Trace reading (a tiny trace written here, not the shared data) and arrival processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridplace.sim import ArrivalProcess, TokenMode, TraceError, read_trace
from gridplace.sim.arrivals import WorkloadTraffic, generate

TRACE_ROWS = [  # (seconds after 18:00:00, context tokens, generated tokens)
    (0.0, 100, 10),
    (0.5, 300, 30),
    (1.0, 200, 0),
    (2.0, 400, 40),
    (2.5, 500, 20),
]


def _write_trace(path: Path) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for seconds, prompt, output in TRACE_ROWS:
        lines.append(f"2023-11-16 18:00:{seconds:010.7f},{prompt},{output}")
    # Azure's files end lines in CRLF and have no newline after the last row.
    path.write_bytes("\r\n".join(lines).encode("utf-8"))
    return path


def _traffic(rps: float = 8.0, prompt: int = 1000, output: int = 100) -> WorkloadTraffic:
    return WorkloadTraffic("w", rps, prompt, output, ("eu-west", "us-east"), (0.75, 0.25))


def test_azure_format_is_read_relative_to_the_first_request(tmp_path: Path) -> None:
    trace = read_trace(_write_trace(tmp_path / "t.csv"))
    assert trace.times_s.tolist() == pytest.approx([0.0, 0.5, 1.0, 2.0, 2.5])
    assert trace.prompt_tokens.tolist() == [100, 300, 200, 400, 500]
    assert trace.output_tokens.tolist() == [10, 30, 1, 40, 20]  # zero generated streams one
    assert trace.rate_rps == pytest.approx(4 / 2.5)


def test_a_bad_row_is_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n1.0,10,5\n2.0,ten,5\n")
    with pytest.raises(TraceError, match=r"bad.csv:3"):
        read_trace(path)
    path.write_text("time,prompt,output\n1.0,10,5\n")
    with pytest.raises(TraceError, match="header"):
        read_trace(path)


def test_trace_is_stretched_to_the_workload_rate_and_wrapped(tmp_path: Path) -> None:
    trace = read_trace(_write_trace(tmp_path / "t.csv"))
    duration_s = 50.0  # many times the (rescaled) trace: it wraps around
    result = generate([_traffic(rps=8.0)], duration_s, ArrivalProcess.TRACE, seed=1, trace=trace)
    assert len(result) / duration_s == pytest.approx(8.0, rel=0.05)
    assert np.all(np.diff(result.time_s) >= 0)
    assert result.time_s.min() >= 0 and result.time_s.max() < duration_s
    # The trace's gaps, divided by 8 / 1.6 = 5.
    gaps = set(np.round(np.diff(result.time_s), 6))
    assert gaps <= {0.1, 0.2, 0.125}


def test_scaled_tokens_meet_the_workload_means_and_keep_the_spread(tmp_path: Path) -> None:
    trace = read_trace(_write_trace(tmp_path / "t.csv"))
    kept = generate([_traffic()], 50.0, ArrivalProcess.TRACE, 1, trace, TokenMode.TRACE)
    scaled = generate([_traffic()], 50.0, ArrivalProcess.TRACE, 1, trace, TokenMode.SCALED)
    assert set(kept.prompt_tokens.tolist()) <= {100, 200, 300, 400, 500}
    assert scaled.prompt_tokens.mean() == pytest.approx(1000, rel=0.1)
    assert scaled.output_tokens.mean() == pytest.approx(100, rel=0.15)
    assert len(set(scaled.prompt_tokens.tolist())) == 5


def test_poisson_and_bursty_rates_and_burstiness() -> None:
    poisson = generate([_traffic(rps=10.0)], 20000.0, ArrivalProcess.POISSON, seed=5)
    bursty = generate([_traffic(rps=10.0)], 20000.0, ArrivalProcess.BURSTY, seed=5)
    for arrivals in (poisson, bursty):
        assert len(arrivals) / 20000.0 == pytest.approx(10.0, rel=0.1)
    window = np.arange(0, 20001, 10)

    def dispersion(times: np.ndarray) -> float:
        counts = np.histogram(times, window)[0]
        return float(counts.var() / counts.mean())

    assert dispersion(poisson.time_s) == pytest.approx(1.0, abs=0.25)
    assert dispersion(bursty.time_s) > 3.0
    shares = np.bincount(poisson.region) / len(poisson)
    assert shares == pytest.approx([0.75, 0.25], abs=0.02)


def test_requests_are_clipped_to_the_context_window() -> None:
    traffic = WorkloadTraffic("w", 5.0, 3000, 2000, ("eu-west",), (1.0,), max_context_tokens=4096)
    arrivals = generate([traffic], 20.0, ArrivalProcess.POISSON, seed=1, token_sigma=0.8)
    assert (arrivals.prompt_tokens + arrivals.output_tokens).max() <= 4096
    assert arrivals.output_tokens.min() >= 1
