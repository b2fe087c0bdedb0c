"""Fitting traffic to requests: a synthetic trace with known variability is recovered."""

from __future__ import annotations

import numpy as np
import pytest

from gridplace.planner.traffic_fit import (
    FitError,
    fit_traffic,
    overflow_threshold,
    poisson_overflow,
)

SPAN_S = 4 * 3600.0


def poisson_times(rate: float, span_s: float, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.uniform(0, span_s, rng.poisson(rate * span_s)))


def modulated_times(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A rate of 4/s with one minute in twenty at 3x the base, for four hours: over 60 s
    windows, the rate that leaves 1% of the requests above it is the high rate less what one
    window in twenty may leave (1% of twenty windows' requests), over the mean."""
    base, blocks = 4.0, []
    for block in range(240):
        rate = base * (3.0 if block % 20 == 0 else 1.0)
        blocks.append(block * 60 + poisson_times(rate, 60.0, rng))
    mean = base * (3 + 19) / 20
    return np.sort(np.concatenate(blocks)), (3 * base - 0.01 * 20 * mean) / mean


def sizes(count: int) -> np.ndarray:
    return np.full(count, 100, dtype=np.int64)


@pytest.mark.parametrize("rate", [0.5, 5.0, 40.0])
def test_poisson_arrivals_fit_as_not_bursty(rate: float) -> None:
    times = poisson_times(rate, SPAN_S, np.random.default_rng(7))
    fit = fit_traffic(times, sizes(len(times)), sizes(len(times)))
    assert fit.rate_rps == pytest.approx(rate, rel=0.05)
    assert fit.interarrival_scv == pytest.approx(1.0, abs=0.1)
    for window in fit.burstiness.windows:
        assert window.peak_to_mean < 1.2, window


def test_a_modulated_rate_is_recovered() -> None:
    times, expected = modulated_times(np.random.default_rng(3))
    fit = fit_traffic(times, sizes(len(times)), sizes(len(times)), windows_s=(60.0,))
    (window,) = fit.burstiness.windows
    assert window.peak_to_mean == pytest.approx(expected, rel=0.03)
    # The gaps alone look almost Poisson: the peak is what shows the burst.
    assert fit.interarrival_scv < 1.5


def test_sizes_are_measured() -> None:
    times = np.arange(20_000, dtype=np.float64) / 10  # 10 requests/s for 2,000 s
    prompts = np.where(np.arange(20_000) % 2 == 0, 100, 300).astype(np.int64)
    fit = fit_traffic(times, prompts, sizes(20_000))
    assert (fit.prompt.mean, fit.prompt.scv) == pytest.approx((200.0, 0.25))
    assert fit.output.scv == 0.0


def test_the_peak_leaves_one_percent_of_the_requests_above_it() -> None:
    # One window of 10 among nine empty ones: 1% of the 10 requests may wait, so the peak is 9.9
    # (the 99th percentile of the windows would be 9.1: it misses most of the clump).
    counts = np.array([10.0] + [0.0] * 9)
    assert overflow_threshold(counts, np.ones(10), 0.01) == pytest.approx(9.9)
    assert overflow_threshold(np.full(4, 5.0), np.ones(4), 0.01) == pytest.approx(4.95)
    # The normal approximation: sigma (phi(z) - z (1 - Phi(z))) = 1 at sigma 10 gives z = 0.90.
    assert poisson_overflow(100.0, 0.01) == pytest.approx(109.0, abs=0.5)


def test_too_short_or_degenerate_input_is_an_error() -> None:
    with pytest.raises(FitError, match="at least 2 requests"):
        fit_traffic(np.array([5.0, 5.0]), sizes(2), sizes(2))
    with pytest.raises(FitError, match="no window length"):
        fit_traffic(np.array([0.0, 30.0]), sizes(2), sizes(2), windows_s=(60.0,))
    sparse = np.arange(0.0, 36_000.0, 10.0)  # 0.1 request/s: 1 per 10 s window
    with pytest.raises(FitError, match="100 whole windows with 2 requests"):
        fit_traffic(sparse, sizes(len(sparse)), sizes(len(sparse)), windows_s=(10.0,))
