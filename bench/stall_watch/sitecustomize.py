"""Bench-only: which event-loop callbacks block a server's loop, and what every thread was doing.

Loaded as ``sitecustomize`` when this folder is on ``PYTHONPATH`` and ``STALL_WATCH_DIR`` is set
(``bench/api_wrk.py --stalls DIR`` does both for the servers it starts); the server's code knows
nothing of it. Each asyncio callback is timed (``Handle._run`` wrapped: ~0.3 us per callback); a
watcher thread samples every thread's stack every 2 ms while one runs longer than
``STALL_WATCH_MS`` (20), and appends one record per such stall to ``DIR/stalls-<pid>.txt``: its
length, and the stacks seen, most frequent first. Collections longer than the threshold are
logged too, and after the first few full ones over 100 ms what the collector tracks (objects
by type, beside the frozen count). A sampled stack is the thread's own: the loop's thread
waiting for the GIL shows wherever it stopped, and the thread holding it shows what it does.
"""

from __future__ import annotations

import asyncio.events
import collections
import gc
import os
import sys
import threading
import time
from typing import Any

DIRECTORY = os.environ.get("STALL_WATCH_DIR")
THRESHOLD_S = float(os.environ.get("STALL_WATCH_MS", "20")) / 1000
SAMPLE_S = 0.002
FRAMES = 12
HEAP_DUMPS = 3  # per process
HEAP_DUMP_AFTER_S = 0.1  # a full collection this long

_running: list[Any] = [None, 0.0]  # the callback running now, when it started
_heap_dumps = [0, False]  # dumps made, one wanted
_started = threading.Event()


def _write(text: str) -> None:
    assert DIRECTORY is not None
    with open(os.path.join(DIRECTORY, f"stalls-{os.getpid()}.txt"), "a") as out:
        out.write(text)


def _stack(frame: Any) -> tuple[str, ...]:
    lines = []
    while frame is not None and len(lines) < FRAMES:
        code = frame.f_code
        lines.append(
            f"{'/'.join(code.co_filename.rsplit('/', 2)[-2:])}:{frame.f_lineno} {code.co_name}"
        )
        frame = frame.f_back
    return tuple(lines)


def _dump_heap() -> None:
    _heap_dumps[0] += 1
    _heap_dumps[1] = False
    objects = gc.get_objects()
    kinds = collections.Counter(type(o).__qualname__ for o in objects)
    del objects
    top = ", ".join(f"{kind} {count}" for kind, count in kinds.most_common(15))
    later = sorted({name.split(".")[0] for name in set(sys.modules) - _modules_at_freeze})
    _write(
        f"\n== heap: {sum(kinds.values())} tracked objects ({gc.get_freeze_count()} frozen "
        f"besides): {top}; modules imported since gc.freeze: {len(later)} packages "
        f"{', '.join(later[:30])}\n"
    )


def _watch() -> None:
    me = threading.get_ident()
    while True:
        time.sleep(SAMPLE_S)
        if _heap_dumps[1]:
            _dump_heap()
        handle, started = _running
        if handle is None or time.perf_counter() - started < THRESHOLD_S:
            continue
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        seen: collections.Counter[tuple[str, tuple[str, ...]]] = collections.Counter()
        while _running[0] is handle and _running[1] == started:
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    seen[(names.get(ident, str(ident)), _stack(frame))] += 1
            time.sleep(SAMPLE_S)
        lasted = time.perf_counter() - started
        lines = [f"\n== stall {lasted * 1e3:.1f} ms at {time.time():.3f}: {repr(handle)[:160]}"]
        for (thread, stack), count in seen.most_common(8):
            lines.append(f"  [{count} samples] thread {thread}:")
            lines.extend(f"      {line}" for line in stack)
        _write("\n".join(lines) + "\n")


def _timed_run(self: Any) -> None:
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_watch, name="stall-watch", daemon=True).start()
    _running[0], _running[1] = self, time.perf_counter()
    try:
        _original_run(self)
    finally:
        _running[0] = None


_gc_started = [0.0]


def _gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    lasted = time.perf_counter() - _gc_started[0]
    if info["generation"] == 2 and lasted >= HEAP_DUMP_AFTER_S and _heap_dumps[0] < HEAP_DUMPS:
        _heap_dumps[1] = True
    if lasted >= THRESHOLD_S:
        _write(
            f"\n== gc generation {info['generation']}: {lasted * 1e3:.1f} ms at {time.time():.3f}\n"
        )


_modules_at_freeze: set[str] = set()


def _freeze() -> None:
    _modules_at_freeze.update(sys.modules)
    _original_freeze()
    _write(
        f"\n== gc.freeze at {time.time():.3f}: {gc.get_freeze_count()} frozen, "
        f"{len(gc.get_objects())} tracked\n"
    )


if DIRECTORY:
    _original_freeze = gc.freeze
    gc.freeze = _freeze
    _original_run = asyncio.events.Handle._run
    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    gc.callbacks.append(_gc)
