"""Fitting a workload's ``traffic`` block to observed requests (a trace or a rate history).

Owns: rate, burstiness and request-size statistics from arrival times and token counts. Must
not: read files or know the planner's options.

Burstiness, per window length W (see ``booking`` for why this measure): the request count per
window of W that leaves 1% of the requests above it, over the mean count, with the Poisson count
noise taken out. The SLA counts requests, not windows: capacity for k requests in a window
serves k of a window's N and the N - k above it wait past their target, so the peak that
matters is the k with sum over windows of (N - k)⁺ = 1% of all requests (a stop-loss quantile
of the counts; the 99th percentile of windows would leave out the busiest 1% of windows, which
hold far more than 1% of the requests when arrivals come in clumps: 14% on the code trace).
Counts of a Poisson process with a varying rate have variance mean + variance of the rate's
integral; the noise part is what a replica's own queueing already absorbs (its capacity is
computed for Poisson arrivals), and it shrinks as the rate grows. So the excess of the measured
peak over the mean is reduced in quadrature by a Poisson peak's excess at the same mean count:
    peakToMean = 1 + sqrt(max(0, (k / mean - 1)² - (k_poisson(mean) / mean - 1)²)),
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
PEAK_PERCENTILE = 99.0  # the share of requests the peak covers (the SLA's 99%)
# A window length is measured only with this many whole windows in the span (so its peak is a
# real tail) and this many requests per window on average (below it a count's peak moves in
# steps of half the mean or more, too coarse to take the Poisson noise out of; the code trace's
# one-second clumps, 10-25x its mean at 2.6 requests a second, are still seen).
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


def overflow_threshold(values: FloatArray, weights: FloatArray, share: float) -> float:
    """The smallest k with sum of weights x (values - k)⁺ <= ``share`` x sum of weights x
    values: the count that leaves ``share`` of the requests above it (``weights``: how often
    each count occurs; 1 each for measured windows)."""
    order = np.argsort(values)[::-1]
    counts, often = values[order], weights[order]
    allowed = share * float((counts * often).sum())
    # At k = counts_i the excess is sum_{j<=i} often_j (counts_j - counts_i), rising with i;
    # below counts_{i-1} it grows by above_{i-1} per unit of k, until it reaches ``allowed``.
    above = np.cumsum(often)
    excess = np.cumsum(often * counts) - above * counts
    i = min(int(np.searchsorted(excess, allowed, side="right")), len(counts))  # >= 1
    return max(0.0, float(counts[i - 1] - (allowed - excess[i - 1]) / above[i - 1]))


def poisson_overflow(mean: float, share: float) -> float:
    """``overflow_threshold`` of Poisson(``mean``) counts (its probabilities summed in log
    space)."""
    if mean <= 0:
        return 0.0
    top = int(mean + 50 * math.sqrt(mean) + 50)
    k = np.arange(top + 1, dtype=np.float64)
    log_mean = math.log(mean)
    probability = np.exp(k * log_mean - mean - np.array([math.lgamma(x + 1) for x in k]))
    return overflow_threshold(k, probability, share)


def peak_to_mean(counts: FloatArray) -> float:
    """The per-window count that leaves 1 - ``PEAK_PERCENTILE`` % of the requests above it,
    over the mean count, Poisson noise taken out (see the module docstring; >= 1)."""
    mean = float(counts.mean())
    if mean <= 0:
        return 1.0
    share = 1 - PEAK_PERCENTILE / 100
    measured = overflow_threshold(counts, np.ones_like(counts), share) / mean - 1
    noise = poisson_overflow(mean, share) / mean - 1
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
