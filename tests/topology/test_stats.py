"""Percentile, jitter, decay and expiry maths of ``stats`` on known samples, and against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridplace.topology.stats import DecayPolicy, grouped_stats

HOUR_S = 3600.0


def one_group(rtt_ms: list[float], weight: list[float] | None = None):  # type: ignore[no-untyped-def]
    values = np.array(rtt_ms, dtype=np.float64)
    weights = np.ones(values.size) if weight is None else np.array(weight, dtype=np.float64)
    return grouped_stats(np.zeros(values.size, dtype=np.int64), values, weights, 1)


def test_equal_weights_percentiles_are_measured_values_of_the_inverted_cdf() -> None:
    stats = one_group([float(v) for v in range(19, 9, -1)])  # 10..19, shuffled order irrelevant
    # Ten equal weights: p50 is the 5th smallest (cumulative 0.5), p90 the 9th, p99 the 10th.
    assert (stats.p50_ms[0], stats.p90_ms[0], stats.p99_ms[0]) == (14.0, 18.0, 19.0)
    assert stats.jitter_ms[0] == pytest.approx(np.mean(np.abs(np.arange(10, 20) - 14.0)))
    assert stats.samples[0] == 10
    assert stats.effective_samples[0] == pytest.approx(10.0)


def test_single_sample_is_every_percentile_with_zero_jitter() -> None:
    stats = one_group([42.5])
    assert stats.p50_ms[0] == stats.p90_ms[0] == stats.p99_ms[0] == 42.5
    assert stats.jitter_ms[0] == 0.0


def test_decay_halves_weight_per_half_life_and_moves_the_median() -> None:
    policy = DecayPolicy(half_life_s=HOUR_S, max_age_s=None)
    weights, keep = policy.weights(np.array([0.0, HOUR_S, 2 * HOUR_S]))
    assert weights == pytest.approx([1.0, 0.5, 0.25])
    assert keep.all()
    # The fresh 10 ms sample carries 1 / 1.75 of the weight: past half, so it is the median;
    # without decay the median is the middle value.
    decayed = one_group([10.0, 20.0, 30.0], weights.tolist())
    flat = one_group([10.0, 20.0, 30.0])
    assert decayed.p50_ms[0] == 10.0
    assert flat.p50_ms[0] == 20.0
    assert decayed.effective_samples[0] == pytest.approx(1.75**2 / (1 + 0.25 + 0.0625))


def test_expiry_drops_samples_older_than_max_age_and_keeps_the_boundary() -> None:
    policy = DecayPolicy(half_life_s=None, max_age_s=2 * HOUR_S)
    weights, keep = policy.weights(np.array([0.0, 2 * HOUR_S, 2 * HOUR_S + 1]))
    assert keep.tolist() == [True, True, False]
    assert weights.tolist() == [1.0, 1.0, 1.0]


def test_future_and_undated_samples_count_as_now() -> None:
    policy = DecayPolicy(half_life_s=HOUR_S, max_age_s=HOUR_S)
    weights, keep = policy.weights(np.array([-5 * HOUR_S, np.nan]))
    assert weights.tolist() == [1.0, 1.0]
    assert keep.all()


@pytest.mark.parametrize(
    "kwargs", [{"half_life_s": 0.0}, {"half_life_s": -1.0}, {"max_age_s": -1.0}]
)
def test_decay_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DecayPolicy(**kwargs)


def test_groups_are_independent_of_interleaving() -> None:
    rng = np.random.default_rng(7)
    group = rng.integers(0, 4, 200)
    rtt = rng.uniform(1, 100, 200)
    weight = rng.uniform(0.1, 1.0, 200)
    together = grouped_stats(group, rtt, weight, 5)  # group 4 has no sample
    for g in range(4):
        alone = one_group(rtt[group == g].tolist(), weight[group == g].tolist())
        assert together.p50_ms[g] == alone.p50_ms[0]
        assert together.p99_ms[g] == alone.p99_ms[0]
        assert together.jitter_ms[g] == pytest.approx(alone.jitter_ms[0])
    assert np.isnan(together.p50_ms[4])
    assert together.samples[4] == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.integers(1, 20)),  # (rtt ms, integer weight)
        min_size=1,
        max_size=40,
    )
)
def test_weighted_percentiles_match_numpy_inverted_cdf(rows: list[tuple[int, int]]) -> None:
    rtt = np.array([float(r) for r, _ in rows])
    weight = np.array([float(w) for _, w in rows])
    stats = one_group(rtt.tolist(), weight.tolist())
    for q, ours in ((0.5, stats.p50_ms[0]), (0.9, stats.p90_ms[0]), (0.99, stats.p99_ms[0])):
        expected = np.quantile(rtt, q, weights=weight, method="inverted_cdf")
        assert ours == expected
