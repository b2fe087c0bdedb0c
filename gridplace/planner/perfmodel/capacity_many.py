"""``capacity``'s TTFT search for many (loaded replica, TTFT budget) pairs in one numpy pass.

Owns: the vectorized twin of ``capacity.LoadedReplica.at_budget`` past its zero-capacity exits:
the largest rate whose TTFT quantile fits each budget (the same 40-step bisection, every pair at
once) and the rate, TTFT and concurrency booked at it. Must not: decide the exits (a budget
below the unloaded TTFT, a zero rate): callers take those pairs through the scalar path.

Bit-for-bit the scalar figures: numpy's +, -, *, /, min are IEEE-rounded like Python's, done in
the scalar code's order; the logarithm of every figure returned is ``math.log``'s (numpy's own
``log`` differs from the C library's in the last bit for ~1 value in 2,000, enough to move a
bisection step). A bisection step's comparison is decided with numpy's ``log`` where the
quantile is clear of the budget (further than ``_CLEAR``, relative: some hundreds of times
what a few ulps of the logarithm can move it) and with ``math.log`` where it is not: the same
decisions, with ``math.log`` on ~1 element in 10 rather than all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridplace.planner.perfmodel.capacity import TTFT_QUANTILE, LoadedReplica

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

BISECTION_STEPS = 40  # as ``capacity._largest_rate``
_MISS = 1.0 - TTFT_QUANTILE  # as ``capacity.wait_quantile_ms``
# A quantile this far from the budget, relative, is on the same side of it whichever library's
# logarithm (each within a few ulps, ~1e-15 relative, of the true one) computed it.
_CLEAR = 1e-13


@dataclass(frozen=True)
class Rates:
    """Per pair: the rate prefill queueing allows, and the rate, TTFT quantile (no network) and
    mean concurrency booked (``LoadedReplica.at_rate``'s figures)."""

    ttft_rps: FloatArray
    rps: FloatArray
    ttft_ms: FloatArray
    concurrency: FloatArray


# A loaded replica's prefill queue: service ms, throughput rps, step ms, output tokens, and
# unloaded TTFT + (chunks - 1) x d(B*) (the first two terms of ``ttft_quantile``).
QueueRow = tuple[float, float, float, float, float]


def queue_row(loaded: LoadedReplica) -> QueueRow:
    """What the vectorized search reads of ``loaded`` (kept by callers that search it often)."""
    base_ms = loaded.unloaded_ttft_ms + (loaded.chunks - 1) * loaded.decode_ms
    return (
        loaded.service_ms, loaded.throughput_rps, loaded.step_ms, float(loaded.output), base_ms,
    )  # fmt: skip


class _Queue:
    """The prefill queues of the pairs, as arrays."""

    def __init__(self, rows: Sequence[QueueRow]) -> None:
        table = np.array(rows, dtype=np.float64).reshape(len(rows), 5)
        self.service_ms, self.throughput_rps, self.step_ms, self.output, self.base_ms = table.T

    def ttft_quantile(self, rps: FloatArray, where: slice | IntArray = slice(None)) -> FloatArray:
        service = self.service_ms[where]
        rho = np.minimum(rps * service / 1e3, 0.999)
        wait = np.zeros_like(rho)
        queued = rho > _MISS
        if queued.any():
            ratios = (rho[queued] / _MISS).tolist()
            logs = np.fromiter(map(math.log, ratios), dtype=np.float64, count=len(ratios))
            wait[queued] = service[queued] / (1.0 - rho[queued]) * logs
        result: FloatArray = self.base_ms[where] + wait
        return result


class _Bisection:
    """The pairs the bisection searches: their queues' figures and budgets, gathered once."""

    def __init__(self, queue: _Queue, search: IntArray, budgets_ms: FloatArray) -> None:
        self.queue, self.search = queue, search
        self.service_ms = queue.service_ms[search]
        self.base_ms = queue.base_ms[search]
        self.budget_ms = budgets_ms[search]
        self.clear_ms = _CLEAR * np.abs(self.budget_ms)

    def fits(self, rps: FloatArray) -> BoolArray:
        """``queue.ttft_quantile(rps, search) <= budget``, decided as it would decide it
        (module docstring). Rates and service times are > 0, so rho is; where rho <= _MISS the
        logarithm is <= 0 and the wait's maximum with 0 is the scalar code's 0."""
        service = self.service_ms
        rho = np.minimum(rps * service / 1e3, 0.999)
        wait = np.maximum(service / (1.0 - rho) * np.log(rho / _MISS), 0.0)
        quantile = self.base_ms + wait
        fits: BoolArray = quantile <= self.budget_ms
        close = np.flatnonzero(np.abs(quantile - self.budget_ms) <= self.clear_ms)
        if len(close):
            exact = self.queue.ttft_quantile(rps[close], self.search[close])
            fits[close] = exact <= self.budget_ms[close]
        return fits


def rates_at_budgets(queues: Sequence[QueueRow], budgets_ms: FloatArray) -> Rates:
    """``LoadedReplica.at_budget``'s rate figures for each (``queue_row``, budget) pair, budgets
    after network RTT and each at least the pair's unloaded TTFT."""
    queue = _Queue(queues)
    throughput = queue.throughput_rps
    # As ``_largest_rate``: where the full throughput fits, a hair above it; else bisect.
    ttft_rps = throughput * 1.000001
    search = np.flatnonzero(queue.ttft_quantile(throughput) > budgets_ms)
    if len(search):
        bisection = _Bisection(queue, search, budgets_ms)
        low = np.zeros(len(search))
        high = throughput[search]
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            fits = bisection.fits(middle)
            low = np.where(fits, middle, low)
            high = np.where(fits, high, middle)
        ttft_rps[search] = low
    rps = np.minimum(throughput, ttft_rps)
    ttft_ms = queue.ttft_quantile(rps)
    concurrency = rps * (ttft_ms + queue.output * queue.step_ms) / 1e3
    return Rates(ttft_rps, rps, ttft_ms, concurrency)


__all__ = ["BISECTION_STEPS", "QueueRow", "Rates", "queue_row", "rates_at_budgets"]
