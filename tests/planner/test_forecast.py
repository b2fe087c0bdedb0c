"""Demand forecasts: a noisy daily (and weekly) cycle is recovered with an upper quantile that
covers it; a plan is due before a forecast ramp, lead time ahead."""

from __future__ import annotations

import numpy as np
import pytest

from gridplace.planner.forecast import Forecast, ForecastError, forecast, valid_from

HOUR_S = 3600.0


def daily(t: np.ndarray) -> np.ndarray:
    return 10 + 5 * np.sin(2 * np.pi * (t - 8) / 24)


def weekly(t: np.ndarray) -> np.ndarray:
    return daily(t) - 3.0 * (((t // 24) % 7) >= 5)  # weekends 3 req/s lower


@pytest.mark.parametrize(("name", "truth", "days"), [("daily", daily, 4), ("weekly", weekly, 19)])
def test_a_noisy_cycle_is_recovered(name: str, truth: object, days: int) -> None:
    assert callable(truth)
    rng = np.random.default_rng(0)
    past = np.arange(24 * days)
    history = truth(past) + rng.normal(0, 0.7, len(past))
    result = forecast(history, HOUR_S, 24)
    future = truth(np.arange(24 * days, 24 * days + 24))
    assert np.abs(result.mean_rps - future).max() < 1.0, name  # noise sd 0.7
    assert np.corrcoef(result.mean_rps, future)[0, 1] > 0.98, name
    assert np.mean(result.upper_rps >= future) >= 0.9, name
    assert result.plan_rps >= future.max()


def test_the_weekly_pattern_is_used_with_two_weeks_of_history() -> None:
    rng = np.random.default_rng(1)
    past = np.arange(24 * 19)  # the next day (19) is a Saturday in this calendar
    history = weekly(past) + rng.normal(0, 0.7, len(past))
    with_weeks = forecast(history, HOUR_S, 24)
    days_only = forecast(history[-24 * 4 :], HOUR_S, 24)
    future = weekly(np.arange(24 * 19, 24 * 20))
    assert np.abs(with_weeks.mean_rps - future).mean() < np.abs(days_only.mean_rps - future).mean()


def test_a_plan_is_due_before_a_forecast_ramp() -> None:
    ramp = Forecast(HOUR_S, np.array([5.0, 5.0, 9.0, 12.0]), np.array([6.0, 6.0, 11.0, 14.0]), 0.95)
    assert valid_from(1000.0, ramp, capacity_rps=10.0, lead_s=600.0) == 1000.0 + 2 * HOUR_S - 600
    assert valid_from(1000.0, ramp, capacity_rps=20.0, lead_s=600.0) is None
    # A ramp sooner than the lead time: as soon as possible.
    assert valid_from(1000.0, ramp, capacity_rps=5.0, lead_s=600.0) == 1000.0


def test_a_history_too_short_is_an_error() -> None:
    with pytest.raises(ForecastError, match="at least 8"):
        forecast(np.ones(3), HOUR_S, 4)
    with pytest.raises(ForecastError):
        forecast(np.array([1.0] * 7 + [np.nan]), HOUR_S, 4)
