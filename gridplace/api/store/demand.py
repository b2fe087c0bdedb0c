"""Demand history in the store: requests per workload, traffic source and window.

Owns: adding samples (old ones pruned), turning nodes' observation windows into samples, and
reading them back as an hourly rate history. Must not: forecast (``planner.forecast`` does) or
know about HTTP.

Two origins count requests: a gateway posting its tally per source (``POST .../demand``), and the
agents' observation windows (what each replica's engine served; no client region, so their
source is ``OBSERVED_SOURCE``). Both see the same requests, so they are never added together: in
each step of the history, a workload's rate is the gateway's where the gateway posted any sample
starting in that step, else the sum of its replicas' observed windows. A node's windows posted
twice (an agent resending after a lost answer) are stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from gridplace.api.store.schema import DemandSampleRow
from gridplace.api.store.store import Store
from gridplace.specs import ObservationWindow

HISTORY_KEPT = timedelta(days=35)  # five weeks: the weekly pattern needs more than two
GATEWAY, OBSERVED = "gateway", "observed"
OBSERVED_SOURCE = "observed"  # engines do not know the client's region


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
    """Store a gateway's samples and drop those older than ``HISTORY_KEPT``; how many were
    stored."""
    with store._session(write=True) as session:
        session.add_all(
            DemandSampleRow(
                workload=workload, source=s.source, window_start=s.window_start,
                window_s=s.window_s, requests=s.requests, origin=GATEWAY,
            )
            for s in samples
        )  # fmt: skip
        _prune(session, [workload], now)
    return len(samples)


def add_observed_demand(
    store: Store, node: str, windows: Sequence[ObservationWindow], now: datetime
) -> int:
    """Store the requests of ``node``'s observation windows (those that count them) as demand
    samples of their workloads: one per (workload, window start), the node's replicas summed,
    unless an earlier post stored it; how many were new."""
    counted: dict[tuple[str, datetime], tuple[float, int]] = {}
    for w in windows:
        if w.requests is not None:
            key = (w.workload, _utc(w.start_s))
            counted[key] = (w.seconds, counted.get(key, (0.0, 0))[1] + w.requests)
    if not counted:
        return 0
    with store._session(write=True) as session:
        rows = session.execute(
            select(DemandSampleRow.workload, DemandSampleRow.window_start).where(
                DemandSampleRow.origin == OBSERVED,
                DemandSampleRow.node == node,
                tuple_(DemandSampleRow.workload, DemandSampleRow.window_start).in_(list(counted)),
            )
        )
        known = {(workload, start) for workload, start in rows}
        new = [(key, value) for key, value in counted.items() if key not in known]
        session.add_all(
            DemandSampleRow(
                workload=workload, source=OBSERVED_SOURCE, window_start=start,
                window_s=seconds, requests=requests, origin=OBSERVED, node=node,
            )
            for (workload, start), (seconds, requests) in new
        )  # fmt: skip
        _prune(session, sorted({w for w, _ in counted}), now)
    return len(new)


def _prune(session: Session, workloads: list[str], now: datetime) -> None:
    session.execute(
        delete(DemandSampleRow).where(
            DemandSampleRow.workload.in_(workloads),
            DemandSampleRow.window_start < now - HISTORY_KEPT,
        )
    )


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def rate_history(
    store: Store, workload: str, since: datetime, until: datetime, step_s: float = 3600.0
) -> RateHistory:
    """Requests per step between ``since`` and ``until``, as mean rates; a window's requests
    count in the step its start falls in (windows are short against a step). A step the gateway
    posted for takes the gateway's counts only (see the module docstring)."""
    steps = max(1, int((until - since).total_seconds() // step_s))
    with store._session(write=False) as session:
        rows = session.execute(
            select(
                DemandSampleRow.source,
                DemandSampleRow.window_start,
                DemandSampleRow.requests,
                DemandSampleRow.origin,
            ).where(
                DemandSampleRow.workload == workload,
                DemandSampleRow.window_start >= since,
                DemandSampleRow.window_start < until,
            )
        ).all()
    counted = {GATEWAY: np.zeros(steps, dtype=bool), OBSERVED: np.zeros(steps, dtype=bool)}
    by_origin: dict[str, dict[str, npt.NDArray[np.float64]]] = {GATEWAY: {}, OBSERVED: {}}
    for source, start, requests, origin in rows:
        index = min(steps - 1, int((start - since).total_seconds() // step_s))
        counted[origin][index] = True
        by_origin[origin].setdefault(source, np.zeros(steps))[index] += requests / step_s
    observed_only = counted[OBSERVED] & ~counted[GATEWAY]
    by_source = dict(by_origin[GATEWAY])
    for source, rates in by_origin[OBSERVED].items():
        kept = np.where(observed_only, rates, 0.0)
        by_source[source] = by_source.get(source, np.zeros(steps)) + kept
    return RateHistory(since, step_s, dict(sorted(by_source.items())))
