"""Per-pair RTT statistics from decay-weighted samples, vectorised over all pairs at once.

Owns: the maths — decay weights, weighted percentiles, jitter, effective sample count — over
columnar numpy arrays, so a million samples summarise in well under a second. Must not: know
about endpoints, files or the graph.

Definitions (the tests check these on known samples):

* weight of a sample of age ``a``: ``0.5 ** (a / half_life)``; ages below 0 (a prober's clock
  ahead of ours) count as 0; samples older than ``max_age`` are dropped before anything else.
* percentile q of a pair: the weighted inverted CDF, i.e. the smallest sample ``x`` whose
  cumulative weight (samples sorted by RTT) reaches ``q`` times the pair's total weight — numpy's
  ``quantile(..., weights=w, method="inverted_cdf")``. It always returns a value that was really
  measured, which keeps p99 of a handful of samples honest (it is their maximum, not an
  extrapolation).
* jitter: decay-weighted mean absolute deviation from the pair's p50. It needs no sample order,
  so rounds merged from several probers (whose order is unknown) agree.
* effective samples: Kish's ``(sum w)^2 / sum w^2``; equal to the count when no decay applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
QUANTILES = (0.50, 0.90, 0.99)


@dataclass(frozen=True)
class DecayPolicy:
    """How sample age counts: halving time of a sample's weight, and when samples expire."""

    half_life_s: float | None = 24 * 3600.0  # None: every kept sample weighs the same
    max_age_s: float | None = 7 * 24 * 3600.0  # None: samples never expire

    def __post_init__(self) -> None:
        if self.half_life_s is not None and not self.half_life_s > 0:
            raise ValueError(f"half_life_s must be > 0, got {self.half_life_s}")
        if self.max_age_s is not None and not self.max_age_s >= 0:
            raise ValueError(f"max_age_s must be >= 0, got {self.max_age_s}")

    def weights(self, age_s: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """(weight of each sample, mask of samples kept); ``age_s`` NaN means 'now'."""
        age = np.where(np.isnan(age_s), 0.0, np.maximum(age_s, 0.0))
        keep = np.ones(age.shape, dtype=bool) if self.max_age_s is None else age <= self.max_age_s
        if self.half_life_s is None:
            return np.ones(age.shape), keep
        return np.exp2(-age / self.half_life_s), keep


@dataclass(frozen=True)
class GroupStats:
    """Statistics per group (pair), indexed by group id; NaN where a group has no sample."""

    p50_ms: FloatArray
    p90_ms: FloatArray
    p99_ms: FloatArray
    jitter_ms: FloatArray
    samples: IntArray
    weight: FloatArray
    effective_samples: FloatArray


def grouped_stats(
    group: IntArray, rtt_ms: FloatArray, weight: FloatArray, groups: int
) -> GroupStats:
    """Weighted p50/p90/p99, jitter and counts of ``rtt_ms`` for each ``group`` id < ``groups``.

    Every weight must be > 0. One sort over (group, rtt) and cumulative sums answer every
    percentile of every group: for group g starting at ``s`` the q-quantile is the first sorted
    sample whose running weight within g reaches ``q * total(g)``.
    """
    order = np.lexsort((rtt_ms, group))
    g, r, w = group[order], rtt_ms[order], weight[order]
    counts = np.bincount(g, minlength=groups).astype(np.int64)
    total = np.bincount(g, weights=w, minlength=groups).astype(np.float64)
    ends = np.cumsum(counts)
    starts = ends - counts
    running = np.cumsum(w)
    present = counts > 0
    before = np.zeros(groups)
    before[present] = running[starts[present]] - w[starts[present]]
    values: list[FloatArray] = []
    for q in QUANTILES:
        idx = np.searchsorted(running, before + q * total, side="left")
        # Rounding of the running sum may step one past either end of a group: stay inside it.
        idx = np.clip(idx, starts, np.maximum(ends - 1, starts))
        value = np.full(groups, np.nan)
        value[present] = r[idx[present]]
        values.append(value)
    p50 = values[0]
    deviation = np.bincount(g, weights=w * np.abs(r - p50[g]), minlength=groups)
    squares = np.bincount(g, weights=w * w, minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        jitter = np.where(present, deviation / total, np.nan)
        effective = np.where(present, total * total / squares, 0.0)
    return GroupStats(
        p50_ms=p50,
        p90_ms=values[1],
        p99_ms=values[2],
        jitter_ms=jitter,
        samples=counts,
        weight=total,
        effective_samples=effective,
    )
