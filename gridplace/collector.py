"""Pausing Python's cyclic garbage collector while this process builds something large that
outlives the block and holds no garbage cycles.

Owns: ``paused()``, a context manager any thread may enter (counted: the collector runs again
when the last one leaves, and only if it ran before the first came in). Its users:

- the serving process reading a 10,000-node grid (``PlanService.grid``: e.g. a plan solved
  without a worker process) creates ~600k objects; each full collection meanwhile
  walked all of them plus the server's own, 4-5 of them per read, 0.6-0.8 s in all with every
  request stalled (``bench/api_profile.py --nodes 10000``). A plan keeps its grid while it
  solves (seconds), so the collector stays paused until the plan is stored and the grid freed:
  the agents' routes make no cyclic garbage (measured: 0 objects per request);
- a cold compile of 10,000 x 1,000 (``planner/compile.py``) makes ~480,000 objects that outlive
  it, none of them in cycles: 4 full collections were 0.84 CPU s of 4.3. After it the first
  young collection walks them once (~0.15 s).

Must not: collect (``gc.collect`` would stall an event loop for a full walk) or stay paused past
the block. ``planner/solve.py`` moves a problem's objects out of the collector's sight for a
solve instead (``gc.freeze``).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection in this process while any thread is inside (module docstring)."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
