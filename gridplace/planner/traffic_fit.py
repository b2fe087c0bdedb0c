"""Fitting a workload's ``traffic`` block to observed requests (a trace or a rate history).

Owns: rate, burstiness and request-size statistics from arrival times and token counts. Must
not: read files or know the planner's options.

Burstiness, per window length W (see ``booking`` for why this measure): the 99th percentile of
the request count over windows of W, over its mean, with the Poisson count noise taken out.
Counts of a Poisson process with a varying rate have variance mean + variance of the rate's
integral; the noise part is what a replica's own queueing already absorbs (its capacity is
computed for Poisson arrivals), and it shrinks as the rate grows. So the excess of the measured
peak over the mean is reduced in quadrature by a Poisson peak's excess at the same mean count:
    peakToMean = 1 + sqrt(max(0, (p99 / mean - 1)² - (poisson_p99(mean) / mean - 1)²)),
which is 1 for Poisson arrivals and independent of the rate for a modulated one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridplace.specs.workload import Burstiness, BurstWindow

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Window lengths measured by default, s: a few seconds (a burst the TTFT slack rides out), tens
# of seconds (what a queue cannot absorb) and minutes (the slow swings of demand).
DEFAULT_WINDOWS_S = (1.0, 10.0, 60.0, 300.0)
PEAK_PERCENTILE = 99.0
# A window length is measured only with this many whole windows in the span (so its p99 is a
# real tail) and this many requests per window on average (below it a count's p99 moves in
# steps of half the mean or more, too coarse to take the Poisson noise out of; the code trace's
# one-second clumps, 10x its mean at 2.6 requests a second, are still seen).
MIN_WINDOWS = 100
MIN_MEAN_COUNT = 2.0


class FitError(ValueError):
    """The requests cannot be fitted (too few, or all at one instant)."""


@dataclass(frozen=True)
class SizeStats:
    """One request-size distribution, tokens."""

    mean: float
    p50: float
    p99: float
    scv: float  # squared coefficient of variation (variance / mean²)

    @staticmethod
    def of(sizes: IntArray) -> SizeStats:
        values = sizes.astype(np.float64)
        mean = float(values.mean())
        return SizeStats(
            mean=mean,
            p50=float(np.percentile(values, 50)),
            p99=float(np.percentile(values, 99)),
            scv=float(values.var() / mean**2) if mean > 0 else 0.0,
        )


@dataclass(frozen=True)
class TrafficFit:
    """What a trace says about a workload's traffic."""

    requests: int
    span_s: float
    rate_rps: float
    interarrival_scv: float  # ca²: 1 for Poisson arrivals (reported, not booked: see booking)
    burstiness: Burstiness
    prompt: SizeStats
    output: SizeStats


def poisson_quantile(mean: float, quantile: float) -> int:
    """The smallest k with P(Poisson(mean) <= k) >= quantile (summed in log space)."""
    if mean <= 0:
        return 0
    log_mean, total, k = math.log(mean), 0.0, 0
    while True:
        total += math.exp(k * log_mean - mean - math.lgamma(k + 1))
        if total >= quantile or k > mean + 50 * math.sqrt(mean) + 50:
            return k
        k += 1


def peak_to_mean(counts: FloatArray) -> float:
    """The ``PEAK_PERCENTILE`` of per-window counts over their mean, Poisson noise taken out
    (see the module docstring; >= 1)."""
    mean = float(counts.mean())
    if mean <= 0:
        return 1.0
    measured = float(np.percentile(counts, PEAK_PERCENTILE)) / mean - 1
    noise = poisson_quantile(mean, PEAK_PERCENTILE / 100) / mean - 1
    return 1.0 + math.sqrt(max(0.0, measured**2 - noise**2))


def window_counts(times_s: FloatArray, window_s: float) -> FloatArray:
    """Requests in each whole window of ``window_s`` from the first arrival (the partial last
    window is dropped: it would read as a lull)."""
    start = float(times_s[0])
    whole = int((float(times_s[-1]) - start) // window_s)
    edges = start + window_s * np.arange(whole + 1)
    counts, _ = np.histogram(times_s, bins=edges)
    return counts.astype(np.float64)


def fit_burstiness(times_s: FloatArray, windows_s: tuple[float, ...]) -> Burstiness:
    """Peak-to-mean of the rate per window length; lengths with fewer than ``MIN_WINDOWS`` whole
    windows in the span, or fewer than ``MIN_MEAN_COUNT`` requests in one, are skipped."""
    windows = []
    for window_s in windows_s:
        counts = window_counts(times_s, window_s)
        if len(counts) >= MIN_WINDOWS and counts.mean() >= MIN_MEAN_COUNT:
            windows.append(BurstWindow(window_s=window_s, peak_to_mean=peak_to_mean(counts)))
    if not windows:
        span = float(times_s[-1] - times_s[0])
        raise FitError(
            f"{len(times_s)} requests over {span:.0f} s: no window length of {list(windows_s)} s "
            f"has {MIN_WINDOWS} whole windows with {MIN_MEAN_COUNT:g} requests each on average; "
            "fit a longer trace or pass other --windows"
        )
    return Burstiness(windows=windows)


def burstiness_at_rate(
    times_s: FloatArray, rate_rps: float, windows_s: tuple[float, ...] = DEFAULT_WINDOWS_S
) -> Burstiness:
    """Burstiness of a trace replayed at another mean rate (every gap scaled by the trace's rate
    / ``rate_rps``, as the simulator replays it): what a workload of that rate sees."""
    times = np.sort(np.asarray(times_s, dtype=np.float64))
    if len(times) < 2 or times[-1] <= times[0]:
        raise FitError(f"needs at least 2 requests at distinct times, has {len(times)}")
    trace_rate = (len(times) - 1) / float(times[-1] - times[0])
    return fit_burstiness((times - times[0]) * trace_rate / rate_rps, windows_s)


def fit_traffic(
    times_s: FloatArray,
    prompt_tokens: IntArray,
    output_tokens: IntArray,
    windows_s: tuple[float, ...] = DEFAULT_WINDOWS_S,
) -> TrafficFit:
    """Fit rate, burstiness and sizes to requests (times in s, any origin, sorted or not)."""
    times = np.sort(np.asarray(times_s, dtype=np.float64))
    if len(times) < 2 or times[-1] <= times[0]:
        raise FitError(f"needs at least 2 requests at distinct times, has {len(times)}")
    gaps = np.diff(times)
    span_s = float(times[-1] - times[0])
    return TrafficFit(
        requests=len(times),
        span_s=span_s,
        rate_rps=(len(times) - 1) / span_s,
        interarrival_scv=float(gaps.var() / gaps.mean() ** 2),
        burstiness=fit_burstiness(times, windows_s),
        prompt=SizeStats.of(np.asarray(prompt_tokens, dtype=np.int64)),
        output=SizeStats.of(np.asarray(output_tokens, dtype=np.int64)),
    )
