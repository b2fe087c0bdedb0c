"""Observation windows from vLLM and llama-server metrics text: deltas, quantiles, resets."""

from __future__ import annotations

import pytest

from gridplace.executor.manifest import EngineMetrics
from gridplace.executor.observe import (
    LLAMA_CPP_METRICS,
    VLLM_METRICS,
    Identity,
    MetricsError,
    observation_window,
    parse_scrape,
)
from gridplace.specs import Engine
from tests.executor.metrics_text import llama_text, vllm_text

VLLM = Identity("n1", "chat", "llama-3.1-8b", "h100-sxm", "bf16", Engine.VLLM)
LLAMA = Identity("n1", "chat", "llama-3.1-8b", "rtx-3090", "int4", Engine.LLAMA_CPP)


def test_a_vllm_window_differences_counters_and_interpolates_bucket_deltas() -> None:
    # Before the window: 5 fast requests. In it: 4 TTFTs in (40, 60] ms and 6 in (60, 80] ms.
    before = parse_scrape(vllm_text(ttft_s=[0.003] * 5, prompt_tokens=500, stopped=5), 1000.0)
    after = parse_scrape(
        vllm_text(
            ttft_s=[0.003] * 5 + [0.05] * 4 + [0.07] * 6,
            itl_s=[0.02] * 90 + [0.3] * 10,
            e2e_s=[0.9] * 10,
            prompt_tokens=1500,
            generation_tokens=110,
            stopped=12,
            length_capped=3,
            running=3,
        ),
        1060.0,
    )
    window = observation_window(VLLM, before, after, VLLM_METRICS, running_samples=[1, 3, 5])
    assert (window.start_s, window.end_s) == (1000.0, 1060.0)
    assert window.requests == 10  # stop 12 + length 3 - 5, summed over finished_reason
    assert (window.prompt_tokens, window.output_tokens) == (1000, 110)
    assert window.ttft is not None and window.itl is not None and window.e2e is not None
    # p50: rank 5 of 10 is the 1st of 6 in (60, 80]: 60 + 20 * 1/6 ms.
    assert window.ttft.p50_ms == pytest.approx(60 + 20 / 6)
    assert window.ttft.p99_ms == pytest.approx(60 + 20 * (9.9 - 4) / 6)
    assert window.ttft.mean_ms == pytest.approx((4 * 50 + 6 * 70) / 10)
    # ITL p50 in (10, 25] ms: rank 50 of the 90 there; p99 in (200, 300]: rank 99, 9th of 10.
    assert window.itl.p50_ms == pytest.approx(10 + 15 * 50 / 90)
    assert window.itl.p99_ms == pytest.approx(200 + 100 * 9 / 10)
    assert window.e2e.p90_ms == pytest.approx(800 + 200 * 9 / 10)
    assert window.mean_running_batch == pytest.approx(3.0)


def test_older_vllm_time_per_output_token_is_read_when_inter_token_latency_is_absent() -> None:
    text = vllm_text(itl_s=[0.03] * 4, itl_name="vllm:time_per_output_token_seconds")
    window = observation_window(
        VLLM, parse_scrape(vllm_text(), 0.0), parse_scrape(text, 10.0), VLLM_METRICS
    )
    assert window.itl is not None and 25 < (window.itl.p50_ms or 0) <= 50


def test_a_restarted_vllm_counts_from_zero_and_an_idle_window_has_no_latencies() -> None:
    before = parse_scrape(vllm_text(ttft_s=[0.05] * 50, prompt_tokens=9000, stopped=50), 0.0)
    after = parse_scrape(vllm_text(ttft_s=[0.5] * 2, prompt_tokens=300, stopped=2), 60.0)
    window = observation_window(VLLM, before, after, VLLM_METRICS)
    assert (window.requests, window.prompt_tokens) == (2, 300)
    assert window.ttft is not None and 250 < (window.ttft.p50_ms or 0) <= 500
    idle = observation_window(
        VLLM, after, parse_scrape(vllm_text(ttft_s=[0.5] * 2), 120), VLLM_METRICS
    )
    assert idle.requests == 0 and idle.ttft is None and idle.itl is None


def test_a_rank_in_the_inf_bucket_gives_the_highest_finite_bound() -> None:
    after = parse_scrape(vllm_text(ttft_s=[5000.0] * 3), 60.0)
    window = observation_window(VLLM, parse_scrape(vllm_text(), 0.0), after, VLLM_METRICS)
    assert window.ttft is not None and window.ttft.p50_ms == pytest.approx(2_560_000)


def test_a_llama_server_window_derives_busy_seconds_means_and_batch_from_counters() -> None:
    before = parse_scrape(llama_text(100, 0.5, 40, 2.0, 50, 1.0), 0.0)
    # In the window: 300 prompt tokens in 0.9 s, 200 tokens predicted over 8 s of request time,
    # 100 decode calls with 250 busy slots (ratio since start: (50 + 250) / 150 = 2.0).
    after = parse_scrape(llama_text(400, 1.4, 240, 10.0, 150, 2.0, processing=2), 60.0)
    window = observation_window(LLAMA, before, after, LLAMA_CPP_METRICS)
    assert window.requests is None and window.ttft is None
    assert (window.prompt_tokens, window.output_tokens, window.decode_steps) == (300, 200, 100)
    assert window.prefill_seconds == pytest.approx(0.9)
    assert window.decode_seconds == pytest.approx(8.0)
    assert window.itl is not None and window.itl.mean_ms == pytest.approx(40.0)
    assert window.itl.p50_ms is None
    assert window.mean_running_batch == pytest.approx(2.5)


def test_a_restarted_llama_server_counts_from_zero() -> None:
    before = parse_scrape(llama_text(5000, 9.0, 900, 30.0, 1000, 3.0), 0.0)
    after = parse_scrape(llama_text(20, 0.1, 10, 0.5, 12, 1.5), 60.0)
    window = observation_window(LLAMA, before, after, LLAMA_CPP_METRICS)
    assert (window.prompt_tokens, window.output_tokens, window.decode_steps) == (20, 10, 12)
    assert window.mean_running_batch == pytest.approx(1.5)


def test_a_command_driver_reads_the_names_its_manifest_maps() -> None:
    mapping = EngineMetrics.model_validate(
        {"requests": ["srv_requests_total"], "promptTokens": ["srv_prompt_total"]}
    )
    text = '# TYPE srv_requests_total counter\nsrv_requests_total{route="a"} 7\n'
    text += 'srv_requests_total{route="b"} 3\nsrv_prompt_total 900\n'
    window = observation_window(VLLM, parse_scrape("", 0.0), parse_scrape(text, 5.0), mapping)
    assert (window.requests, window.prompt_tokens, window.output_tokens) == (10, 900, 0)


def test_text_that_is_not_prometheus_is_refused() -> None:
    with pytest.raises(MetricsError, match="not Prometheus text"):
        parse_scrape("vllm:num_requests_running{engine=0 nonsense\n", 0.0)
    with pytest.raises(MetricsError, match="over the"):
        parse_scrape("x 1\n" * 2_000_000, 0.0)
