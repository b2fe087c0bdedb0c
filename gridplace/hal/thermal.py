"""From telemetry samples to ``specs.ThermalStatus``: throttle ratio, sustained clock ratio, p95
temperature over a window, and a forecast of the next window's throttle ratio.

Owns: the arithmetic of thermal derating.
Must not: read hardware or storage (it takes samples; ``history`` keeps them).

Definitions, over the samples in ``[now - window, now]`` of healthy devices:
  throttle ratio          share of samples whose clocks were capped for thermal or power reasons
                          (samples where the driver cannot say are left out);
  sustained clock ratio   mean of SM clock / max SM clock over *busy* samples (utilisation at
                          least ``BUSY_UTILIZATION_PERCENT``), because an idle GPU clocks down and
                          that is not a derate; over all samples when utilisation is unknown;
  p95 temperature         nearest-rank 95th percentile of the core temperature.

Forecast (a time-of-day aware, exponentially decaying moving average):
  1. each sample gets weight 0.5 ** (age in days / ``half_life_days``): recent days count more;
  2. the overall ratio is the weighted mean of "throttled" over all samples;
  3. each hour of the day h (UTC) gets the weighted mean of its own samples, shrunk toward the
     overall ratio by a pseudo-weight of ``SHRINK`` x (the average weight per hour), so an hour
     seen only a few times does not swing the forecast (an hour never seen takes the overall);
  4. the forecast for ``[now, now + horizon)`` is the mean of the hourly ratios over the hours it
     covers, weighted by how much of each hour it covers.
So a card that throttles every afternoon gets a high forecast for an afternoon horizon and a low
one for the morning, and a 24-hour horizon gets the (decayed) daily average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gridplace.hal.device import Telemetry
from gridplace.specs import ThermalStatus

BUSY_UTILIZATION_PERCENT = 50.0
HALF_LIFE_DAYS = 3.0
SHRINK = 0.25
_HOUR_S = 3600.0
_DAY_S = 86_400.0


def _usable(samples: Sequence[Telemetry]) -> list[Telemetry]:
    return [s for s in samples if s.healthy]


def throttle_ratio(samples: Sequence[Telemetry]) -> float | None:
    """Share of samples with clocks capped (thermal or power); None if no sample can say."""
    known = [s.throttled for s in _usable(samples) if s.throttled is not None]
    if not known:
        return None
    return sum(1 for throttled in known if throttled) / len(known)


def sustained_clock_ratio(samples: Sequence[Telemetry]) -> float | None:
    """Mean SM clock / max SM clock over busy samples (all samples if utilisation is unknown)."""
    usable = [s for s in _usable(samples) if s.clock_ratio is not None]
    if any(s.utilization_percent is not None for s in usable):
        usable = [
            s
            for s in usable
            if s.utilization_percent is not None
            and s.utilization_percent >= BUSY_UTILIZATION_PERCENT
        ]
    ratios = [s.clock_ratio for s in usable if s.clock_ratio is not None]
    if not ratios:
        return None
    return sum(ratios) / len(ratios)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def p95_temperature_c(samples: Sequence[Telemetry]) -> float | None:
    temperatures = [s.temperature_c for s in _usable(samples) if s.temperature_c is not None]
    return percentile(temperatures, 0.95) if temperatures else None


def forecast_throttle_ratio(
    samples: Sequence[Telemetry],
    now_s: float,
    horizon_hours: float = 1.0,
    half_life_days: float = HALF_LIFE_DAYS,
) -> float | None:
    """Expected throttle ratio over ``[now_s, now_s + horizon)`` (module docstring)."""
    if horizon_hours <= 0:
        raise ValueError("horizon_hours must be positive")
    weight_by_hour = [0.0] * 24
    throttled_by_hour = [0.0] * 24
    for sample in _usable(samples):
        if sample.throttled is None or sample.timestamp_s > now_s:
            continue
        age_days = (now_s - sample.timestamp_s) / _DAY_S
        weight = 0.5 ** (age_days / half_life_days)
        hour = _hour_of_day(sample.timestamp_s)
        weight_by_hour[hour] += weight
        throttled_by_hour[hour] += weight * sample.throttled
    total_weight = sum(weight_by_hour)
    if total_weight == 0:
        return None
    overall = sum(throttled_by_hour) / total_weight
    prior = SHRINK * total_weight / 24
    hourly = [
        (throttled_by_hour[h] + prior * overall) / (weight_by_hour[h] + prior) for h in range(24)
    ]
    # Walk the horizon hour by hour, weighting each hour of the day by the time it covers.
    covered_s = 0.0
    expected = 0.0
    cursor_s = now_s
    end_s = now_s + horizon_hours * _HOUR_S
    while cursor_s < end_s:
        hour_end_s = (math.floor(cursor_s / _HOUR_S) + 1) * _HOUR_S
        step_s = min(hour_end_s, end_s) - cursor_s
        expected += step_s * hourly[_hour_of_day(cursor_s)]
        covered_s += step_s
        cursor_s += step_s
    return min(1.0, max(0.0, expected / covered_s))


def _hour_of_day(timestamp_s: float) -> int:
    """UTC hour of the day, 0-23 (local time would bucket the same samples the same way)."""
    return int((timestamp_s % _DAY_S) // _HOUR_S)


def thermal_status(
    samples: Sequence[Telemetry],
    now_s: float,
    window_hours: float = 24.0,
    horizon_hours: float = 1.0,
) -> ThermalStatus | None:
    """The ``Node.status.thermal`` summary of ``samples``; None when no sample says whether
    clocks were capped (the ratio is the one required figure).

    The window figures use the last ``window_hours``; the forecast uses every sample given.
    """
    window = [s for s in samples if now_s - window_hours * _HOUR_S <= s.timestamp_s <= now_s]
    ratio = throttle_ratio(window)
    if ratio is None:
        return None
    clock_ratio = sustained_clock_ratio(window)
    return ThermalStatus(
        throttle_ratio=round(ratio, 4),
        window_hours=window_hours,
        # The spec bounds the ratio to (0, 1.5]; boost clocks above "max" are capped there.
        sustained_clock_ratio=round(min(clock_ratio, 1.5), 4) if clock_ratio else None,
        p95_temperature_c=p95_temperature_c(window),
        forecast_throttle_ratio=_rounded(forecast_throttle_ratio(samples, now_s, horizon_hours)),
    )


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
