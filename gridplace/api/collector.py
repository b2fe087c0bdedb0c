"""Pausing Python's cyclic garbage collector while the serving process builds a large grid.

Owns: ``paused()``, a context manager any thread may enter (counted: the collector runs again
when the last one leaves, and only if it ran before the first came in). Reading a 10,000-node
grid (``PlanService.grid``: a plan, a dry run, a change check that found something) creates
~600k objects; each full collection meanwhile walks all of them plus the server's own, so the
collector ran 4-5 full collections per read, 0.6-0.8 s in all with every request stalled
(``bench/api_profile.py --nodes 10000``). A plan keeps its grid while it solves (seconds), so
the collector stays paused until the plan is stored and the grid freed: the agents' routes make
no cyclic garbage (measured: 0 objects per request), so nothing piles up meanwhile.
Must not: collect (``gc.collect`` would stall the event loop for a full walk) or stay paused
past the block.
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
