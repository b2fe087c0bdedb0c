"""Demand that follows a daily cycle: the rate follows the profile, compressed in time."""

from __future__ import annotations

import numpy as np
import pytest

from gridplace.sim.arrivals import ArrivalProcess, WorkloadTraffic, generate
from gridplace.sim.diurnal import TYPICAL_DAY, DailyCycle, DiurnalProfile
from gridplace.sim.errors import SimSettingsError

TRAFFIC = WorkloadTraffic("w", 20.0, 100, 10, ("eu-west",), (1.0,))


def test_a_day_compressed_into_an_hour_follows_the_profile() -> None:
    duration_s, cycle = 3600.0, DailyCycle(24.0)
    base = generate([TRAFFIC], cycle.warped_span_s(duration_s), ArrivalProcess.POISSON, seed=1)
    times = cycle.warp(base.time_s, duration_s)
    assert np.all(np.diff(times) >= 0) and times[-1] < duration_s
    per_hour = np.histogram(times, bins=24, range=(0, duration_s))[0] / 150.0  # 150 s an hour
    expected = 20.0 * np.asarray(TYPICAL_DAY) / np.mean(TYPICAL_DAY)
    assert np.corrcoef(per_hour, expected)[0, 1] > 0.97
    assert per_hour.argmax() in range(11, 16) and per_hour.argmin() in range(1, 5)
    # A whole day keeps the mean rate.
    assert len(times) / duration_s == pytest.approx(20.0, rel=0.03)


def test_a_night_is_quiet() -> None:
    night = DailyCycle(6.0, DiurnalProfile(start_hour=0.0))
    assert night.warped_span_s(3600.0) / 3600.0 == pytest.approx(0.39, abs=0.03)


def test_bad_profiles_are_rejected() -> None:
    with pytest.raises(SimSettingsError):
        DiurnalProfile(hourly=(1.0,) * 23)
    with pytest.raises(SimSettingsError):
        DailyCycle(0.0)
