"""Latency at demand (``at_demand``): the queueing model at the load the demand puts on a replica,
beside the full-load figures it was booked at."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gridplace.planner.at_demand import latency_at, wait_quantile_ms
from gridplace.planner.problem import Option, Queueing
from gridplace.specs import Precision

# A replica booked at 4 req/s: TTFT 700 ms at that load (p95, network excluded), 300 ms at zero
# load, a 100 ms prefill service time; ITL 20 ms at batch 1, 50 ms at the booked batch; its one
# traffic source is 80 ms away.
QUEUEING = Queueing(booked_ttft_ms=700, unloaded_ttft_ms=300, service_ms=100, unloaded_itl_ms=20)
OPTION = Option(
    index=0, workload=0, pool=0, precision=Precision.BF16, tensor_parallel=1, share=1,
    ttft_ms={"eu-west": 780.0}, itl_ms=50.0, capacity_rps=4.0, vram_gib=20.0,
    cost_per_hour=1.0, power_watts=300.0, precision_rank=0, servable_sources=("eu-west",),
    queueing=QUEUEING,
)  # fmt: skip


def test_no_wait_below_the_quantile_s_share_and_an_m_m_1_tail_above() -> None:
    assert wait_quantile_ms(0.005, 100, 0.99) == 0.0
    assert wait_quantile_ms(0.5, 100, 0.99) == pytest.approx(100 / 0.5 * 3.912, rel=1e-3)
    assert wait_quantile_ms(0.5, 100, 0.5) == 0.0  # half the requests never wait at rho 0.5


def test_latency_at_demand_includes_network_and_grows_with_load() -> None:
    idle = latency_at(OPTION, 0.0)
    half = latency_at(OPTION, 2.0)
    full = latency_at(OPTION, 4.0)
    assert idle is not None and half is not None and full is not None
    assert idle.ttft_p50_ms == idle.ttft_p99_ms == 380.0  # zero load + 80 ms network
    assert idle.itl_ms == 20.0 and full.itl_ms == 50.0 and half.itl_ms == 35.0
    assert half.ttft_p50_ms < half.ttft_p99_ms < full.ttft_p99_ms
    assert half.load_rps == 2.0


def test_no_figures_without_queueing_figures() -> None:
    assert latency_at(replace(OPTION, queueing=None), 1.0) is None
