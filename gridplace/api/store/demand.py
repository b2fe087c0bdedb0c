"""Demand history in the store: requests per workload, traffic source and window.

Owns: adding samples (old ones pruned) and reading them back as an hourly rate history. Must
not: forecast (``planner.forecast`` does) or know about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, select

from gridplace.api.store.schema import DemandSampleRow
from gridplace.api.store.store import Store

HISTORY_KEPT = timedelta(days=35)  # five weeks: the weekly pattern needs more than two


@dataclass(frozen=True)
class DemandSample:
    source: str
    window_start: datetime
    window_s: float
    requests: int


@dataclass(frozen=True)
class RateHistory:
    """Mean request rate per step (requests/s), per source, from ``start`` on."""

    start: datetime
    step_s: float
    by_source: dict[str, npt.NDArray[np.float64]]

    @property
    def total(self) -> npt.NDArray[np.float64]:
        steps = len(next(iter(self.by_source.values()))) if self.by_source else 0
        return sum(self.by_source.values(), np.zeros(steps))


def add_demand(store: Store, workload: str, samples: Sequence[DemandSample], now: datetime) -> int:
    """Store the samples and drop those older than ``HISTORY_KEPT``; how many were stored."""
    with store._session(write=True) as session:
        session.add_all(
            DemandSampleRow(
                workload=workload, source=s.source, window_start=s.window_start,
                window_s=s.window_s, requests=s.requests,
            )
            for s in samples
        )  # fmt: skip
        session.execute(
            delete(DemandSampleRow).where(
                DemandSampleRow.workload == workload,
                DemandSampleRow.window_start < now - HISTORY_KEPT,
            )
        )
    return len(samples)


def rate_history(
    store: Store, workload: str, since: datetime, until: datetime, step_s: float = 3600.0
) -> RateHistory:
    """Requests per step between ``since`` and ``until``, as mean rates; a window's requests
    count in the step its start falls in (windows are short against a step)."""
    steps = max(1, int((until - since).total_seconds() // step_s))
    with store._session(write=False) as session:
        rows = session.execute(
            select(
                DemandSampleRow.source, DemandSampleRow.window_start, DemandSampleRow.requests
            ).where(
                DemandSampleRow.workload == workload,
                DemandSampleRow.window_start >= since,
                DemandSampleRow.window_start < until,
            )
        ).all()
    by_source: dict[str, npt.NDArray[np.float64]] = {}
    for source, start, requests in rows:
        index = min(steps - 1, int((start - since).total_seconds() // step_s))
        by_source.setdefault(source, np.zeros(steps))[index] += requests / step_s
    return RateHistory(since, step_s, dict(sorted(by_source.items())))
