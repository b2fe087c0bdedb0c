"""Demand that follows a daily cycle: a workload's arrivals time-warped by an hourly profile.

Owns: the daily profile (relative rate per hour of the day, mean 1) and the time change that
turns arrivals at a constant mean rate into arrivals whose rate follows it. Must not: generate
arrivals itself (``arrivals.generate`` does) or know replicas.

A run of ``duration_s`` seconds covers ``hours`` hours of the profile, so a day can be compressed
(24 hours in one simulated hour: every rate change 24x faster, the bursts inside the trace kept
as they are). With m(h) the profile at hour h and h(t) = t x hours / duration, the rate at run
time t is lambda x m(h(t)). Arrivals generated at the constant rate lambda over
[0, Lambda(duration)), where Lambda(t) = integral of m(h(s)) ds over [0, t], are moved to
Lambda^-1(u): the time change of a point process, which keeps the order and the clustering of
the arrivals and makes their rate follow the profile (the run's mean is the profile's mean over
the hours it covers: a night is quiet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridplace.sim.errors import SimSettingsError

FloatArray = npt.NDArray[np.float64]
# An interactive service's day in its users' time zone (relative rate at each hour's middle):
# a trough around 03:00 at a third of the peak, a ramp from 06:00, a plateau 10:00-16:00 and an
# evening decline. The shape public LLM-serving traces report (Azure's weekly traces, Splitwise),
# not a measurement of them.
TYPICAL_DAY = (
    0.45, 0.38, 0.34, 0.33, 0.36, 0.45, 0.62, 0.85, 1.08, 1.25, 1.35, 1.40,
    1.42, 1.43, 1.42, 1.38, 1.32, 1.25, 1.18, 1.10, 1.00, 0.88, 0.72, 0.57,
)  # fmt: skip
GRID_POINTS = 20_001  # samples of Lambda over the run (the profile is smooth at that scale)


@dataclass(frozen=True)
class DiurnalProfile:
    """Relative request rate per hour of the day (24 values, normalized to mean 1)."""

    hourly: tuple[float, ...] = TYPICAL_DAY
    start_hour: float = 0.0  # the hour of the day the run starts at

    def __post_init__(self) -> None:
        if len(self.hourly) != 24 or min(self.hourly) < 0 or max(self.hourly) <= 0:
            raise SimSettingsError("diurnal", self.hourly, "needs 24 rates >= 0, not all 0")
        if not 0 <= self.start_hour < 24:
            raise SimSettingsError("diurnal.start_hour", self.start_hour, "must be in [0, 24)")

    def rate(self, hours: FloatArray) -> FloatArray:
        """Relative rate at each hour of the day (linear between hour middles, wrapping)."""
        levels = np.asarray(self.hourly, dtype=np.float64)
        levels = levels / levels.mean()
        centres = np.arange(24) + 0.5
        wrapped = np.mod(hours + self.start_hour, 24.0)
        values: FloatArray = np.interp(
            wrapped, np.concatenate(([centres[-1] - 24], centres, [centres[0] + 24])),
            np.concatenate(([levels[-1]], levels, [levels[0]])),
        )  # fmt: skip
        return values


@dataclass(frozen=True)
class DailyCycle:
    """A run of ``duration_s`` seconds that covers ``hours`` hours of ``profile``."""

    hours: float
    profile: DiurnalProfile = DiurnalProfile()

    def __post_init__(self) -> None:
        if not 0 < self.hours <= 24 * 28:
            raise SimSettingsError("diurnal hours", self.hours, "must be in (0, 672]")

    def _grid(self, duration_s: float) -> tuple[FloatArray, FloatArray]:
        """(run times, Lambda at them), Lambda in seconds of mean-rate traffic."""
        times = np.linspace(0.0, duration_s, GRID_POINTS)
        rates = self.profile.rate(times * self.hours / duration_s)
        steps = np.diff(times) * (rates[1:] + rates[:-1]) / 2
        return times, np.concatenate(([0.0], np.cumsum(steps)))

    def warped_span_s(self, duration_s: float) -> float:
        """Lambda(duration): how long to generate constant-rate arrivals for."""
        return float(self._grid(duration_s)[1][-1])

    def warp(self, times_s: FloatArray, duration_s: float) -> FloatArray:
        """Constant-rate arrival times over [0, Lambda(duration)) moved to run time."""
        grid, cumulative = self._grid(duration_s)
        moved: FloatArray = np.interp(times_s, cumulative, grid)
        return np.minimum(moved, np.nextafter(duration_s, 0.0))

    def rate_at(self, times_s: FloatArray, duration_s: float) -> FloatArray:
        """The relative rate at run times (for reports and tests)."""
        return self.profile.rate(np.asarray(times_s) * self.hours / duration_s)
