"""The grid a plan is solved on, read in the process that solves it.

Owns: ``StoredGrid`` (a database and how its nodes are judged at one instant: small, picklable)
and ``read``: every stored node judged as ``PlanService.grid`` judges them (``grid.judge``), and
the stored probes, from a store this process opens once per database. A solver worker reads them
itself, so the serving process never holds a whole grid for a plan or a dry run: 10,000 Node
documents are ~600k objects and ~0.4 s of CPU to read and validate, during which every agent's
request waited (README, "A large grid"). The serving process writes the heartbeats it holds
before it hands a plan over, so the worker reads what the server answered.
Must not: write to the store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from gridplace.api.grid import GridView, judge
from gridplace.api.store import Store
from gridplace.api.store.engine import create_store_engine
from gridplace.specs import LatencyProbes


@dataclass(frozen=True)
class StoredGrid:
    database_url: str
    now: datetime  # silence is judged at this instant (the server's clock when it asked)
    started_at: datetime  # the serving process's start (silence counts from it at the earliest)
    grace_s: float
    mass_silence_fraction: float


_stores: dict[str, Store] = {}
_lock = threading.Lock()


def read(grid: StoredGrid) -> tuple[GridView, list[LatencyProbes]]:
    """Every stored node judged at ``grid.now``, and the stored probes."""
    with _lock:
        store = _stores.get(grid.database_url)
        if store is None:  # the server migrated it; a worker only reads
            store = _stores[grid.database_url] = Store(create_store_engine(grid.database_url))
    view = judge(store.nodes(), grid.now, grid.started_at, grid.grace_s, grid.mass_silence_fraction)
    return view, store.probes()
