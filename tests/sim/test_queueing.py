"""The replica against queueing theory and hand-computed schedules, with fake step times."""

from __future__ import annotations

import numpy as np
import pytest

from gridplace.sim import ReplicaLimits, run
from tests.sim.fixtures import FakeSteps, arrivals, one_replica_world

RATE_RPS = 5.0
DURATION_S = 4000.0


def _poisson_times(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / RATE_RPS, int(RATE_RPS * DURATION_S * 1.2))
    times = np.cumsum(gaps)
    return times[times < DURATION_S]


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param("deterministic", id="M/D/1"),
        pytest.param("exponential", id="M/M/1"),
    ],
)
def test_single_server_mean_wait_matches_pollaczek_khinchine(sizes: str) -> None:
    """One prompt at a time (max_sequences 1), one output token: the replica is an M/G/1
    FIFO server whose service time is the prefill; its mean wait is P-K's
    lambda E[S^2] / (2 (1 - rho)) (M/D/1: rho D / (2 (1 - rho)); M/M/1: rho E[S] / (1 - rho))."""
    times = _poisson_times(seed=7)
    rng = np.random.default_rng(11)
    if sizes == "deterministic":
        prompts = np.full(len(times), 100)
    else:
        prompts = np.maximum(np.rint(rng.exponential(100.0, len(times))), 1).astype(int)
    steps = FakeSteps(overhead_ms=0.0, per_token_ms=1.0)  # service = prompt tokens ms
    world = one_replica_world(steps, ReplicaLimits(kv_tokens=10**9, max_sequences=1))
    result = run(world, arrivals(times, prompts, 1), DURATION_S, drain_s=100.0)

    service_s = prompts * 1e-3
    rho = RATE_RPS * service_s.mean()
    expected_wait_ms = RATE_RPS * (service_s**2).mean() / (2 * (1 - rho)) * 1e3
    measured_wait_ms = float(np.mean(result.ttft_ms - prompts * 1.0))
    assert 0.45 < rho < 0.55
    assert measured_wait_ms == pytest.approx(expected_wait_ms, rel=0.10)


def test_lone_request_times_equal_the_step_model() -> None:
    """Alone on a replica: TTFT = prefill; every gap = one decode step; e2e adds them up."""
    steps = FakeSteps(overhead_ms=2.0, per_token_ms=0.5, decode_step_ms=12.5)
    world = one_replica_world(steps, ReplicaLimits(kv_tokens=10_000), rtt_ms=40.0)
    result = run(world, arrivals([1.0], 300, 20), 10.0)
    # 40 ms RTT: half out, half back with the first token.
    assert result.ttft_ms[0] == pytest.approx(2.0 + 300 * 0.5 + 40.0)
    assert result.itl_mean_ms[0] == pytest.approx(12.5)
    assert result.itl_max_ms[0] == pytest.approx(12.5)
    assert result.e2e_ms[0] == pytest.approx(2.0 + 150.0 + 19 * 12.5 + 40.0)


def test_kv_cache_admission_makes_the_third_request_wait() -> None:
    """KV holds two requests of 100 + 50 tokens: the third starts when the first finishes."""
    steps = FakeSteps(overhead_ms=0.0, per_token_ms=0.1, decode_step_ms=10.0)
    world = one_replica_world(steps, ReplicaLimits(kv_tokens=300, token_budget=100))
    result = run(world, arrivals([0.0, 0.0, 0.0], 100, 50), 10.0)
    first_done_ms = result.e2e_ms[0]
    assert result.ttft_ms[1] < first_done_ms
    assert result.ttft_ms[2] > first_done_ms
    # With room for three, the third would have started at once.
    roomy = one_replica_world(steps, ReplicaLimits(kv_tokens=450, token_budget=100))
    assert run(roomy, arrivals([0.0, 0.0, 0.0], 100, 50), 10.0).ttft_ms[2] < first_done_ms


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps() -> None:
    """A 1000-token prompt with a 250-token budget takes 4 steps, each also decoding the
    sequence already running, so that sequence sees its gaps stretched by the chunks."""
    steps = FakeSteps(overhead_ms=1.0, per_token_ms=0.2, decode_step_ms=10.0)
    world = one_replica_world(steps, ReplicaLimits(kv_tokens=10**6, token_budget=251))
    result = run(world, arrivals([0.0, 0.5], [10, 1000], [200, 2]), 10.0)
    # Budget 251 - 1 decoding sequence = 250 tokens of prompt per step: 4 chunks of 50 ms work.
    assert result.ttft_ms[1] == pytest.approx(4 * (10.0 + 50.0), abs=10.0)
    assert result.itl_max_ms[0] == pytest.approx(60.0)


def test_misses_are_attributed_to_ttft_itl_or_loss() -> None:
    """Two requests at once on a one-at-a-time replica: the second's TTFT is late; a slow
    decoder misses ITL only."""
    steps = FakeSteps(overhead_ms=0.0, per_token_ms=1.0, decode_step_ms=30.0)
    world = one_replica_world(
        steps, ReplicaLimits(kv_tokens=10**6, max_sequences=1), ttft_slo_ms=150, itl_slo_ms=20
    )
    result = run(world, arrivals([0.0, 0.0, 5.0], 100, [1, 1, 10]), 10.0)
    assert result.misses() == {"ttftOnly": 1, "itlOnly": 1, "both": 0, "lost": 0, "unfinished": 0}
    assert result.met().tolist() == [True, False, False]
