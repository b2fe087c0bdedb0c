"""Demand forecasts: the next planning window's request rate, with an upper quantile, from a
workload's rate history; and when a plan for it must be valid.

Owns: fitting a history (one mean rate per step, e.g. per hour) and forecasting it; the time a
plan must be published ahead of a ramp (``valid_from``). Must not: store history (the API does)
or plan.

Model: statsmodels' ETSModel (Hyndman's innovations state-space exponential smoothing), additive
error, damped additive trend and an additive daily seasonal. With more than two weeks of history
(MSTL needs more than two periods) the weekly pattern is taken out first by MSTL (seasonal-trend
decomposition with several periods), as one level per day of the week, and added back. Why this
and not a home-made fit or Holt-Winters alone: ETSModel is the same smoothing with a likelihood,
so its prediction intervals come from the model rather than from a guessed spread, and
statsmodels is maintained and tested against R's forecast package. A history too short for a
daily cycle (under two days) gets a level-and-trend model without seasonality.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
UPPER_QUANTILE = 0.95
MIN_POINTS = 8


class ForecastError(ValueError):
    """The history cannot be forecast (too short, or not finite)."""


@dataclass(frozen=True)
class Forecast:
    """Per step of the next window: the mean forecast and its upper quantile (requests/s)."""

    step_s: float
    mean_rps: FloatArray
    upper_rps: FloatArray
    quantile: float

    @property
    def plan_rps(self) -> float:
        """The rate to plan the window for: the highest upper quantile in it."""
        return float(self.upper_rps.max())


def forecast(
    history_rps: FloatArray,
    step_s: float,
    horizon_steps: int,
    quantile: float = UPPER_QUANTILE,
) -> Forecast:
    """Forecast ``horizon_steps`` steps after a history sampled every ``step_s`` seconds."""
    import pandas as pd  # statsmodels' own dependency; its prediction results need an index
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.seasonal import MSTL

    history = np.asarray(history_rps, dtype=np.float64)
    if len(history) < MIN_POINTS or not np.all(np.isfinite(history)) or horizon_steps < 1:
        raise ForecastError(
            f"needs at least {MIN_POINTS} finite rates and a horizon >= 1 step, got "
            f"{len(history)} rates, horizon {horizon_steps}"
        )
    day = round(86_400 / step_s)
    week = 7 * day
    weekly = np.zeros(horizon_steps)
    series = history
    if len(history) > 2 * week and day >= 2:  # MSTL needs more than two periods
        parts = MSTL(history, periods=(day, week)).fit()
        # The weekly part as one level per day of the week (its hourly wiggles are the daily
        # cycle's or noise): averaged over the weeks seen, repeated over the horizon.
        day_of_week = (np.arange(len(history) + horizon_steps) // day) % 7
        week_part = np.asarray(parts.seasonal)[:, 1]
        levels = np.array([week_part[day_of_week[: len(history)] == d].mean() for d in range(7)])
        series = history - levels[day_of_week[: len(history)]]
        weekly = levels[day_of_week[len(history) :]]
    seasonal = len(series) >= 2 * day and day >= 2
    model = ETSModel(
        pd.Series(series),
        error="add",
        trend="add",
        damped_trend=True,
        seasonal="add" if seasonal else None,
        seasonal_periods=day if seasonal else None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short or flat histories
        fitted = model.fit(disp=False)
        prediction = fitted.get_prediction(start=len(series), end=len(series) + horizon_steps - 1)
        frame = prediction.summary_frame(alpha=2 * (1 - quantile))
    mean = np.maximum(np.asarray(frame["mean"]) + weekly, 0.0)
    upper = np.maximum(np.asarray(frame["pi_upper"]) + weekly, mean)
    return Forecast(step_s, mean, upper, quantile)


def valid_from(
    now_s: float, forecast: Forecast, capacity_rps: float, lead_s: float
) -> float | None:
    """When a plan for the forecast must be valid: ``lead_s`` (its replicas' cold start and the
    agents' pull interval) before the first step whose upper quantile exceeds the capacity
    in place; None when the window never does (the plan in place holds)."""
    over = np.nonzero(forecast.upper_rps > capacity_rps)[0]
    if len(over) == 0:
        return None
    ramp_s = now_s + float(over[0]) * forecast.step_s
    return max(now_s, ramp_s - lead_s) if math.isfinite(ramp_s) else None
