"""Warm standbys on this node: the plan's ``prewarm`` entries for it, fetched at low priority.

Owns: when a standby's weights are fetched — only once every replica assigned here runs, one at
a time in the pre-warmer's standby lane — what that fetch may evict (nothing an assigned replica
or a standby already held uses: a standby that would need their space is skipped, not fetched),
and the standby items of the node's state report.
A ``vram`` standby goes one step further once its weights are on disk and every assigned replica
runs: its engine is started idle on its GPUs (``standby_engines``; not on GPUs a replica uses),
reported ``loaded`` with its port once it answers; a later plan that assigns its workload here
adopts that process as the replica (a start of seconds), and a plan that drops it stops it.
Must not: start processes itself (``standby_engines`` does) or talk to the API.

Reported states: ``waiting`` (assigned replicas not all running yet), ``fetching``, ``ready``
(weights verified on disk; a vram standby's engine not loaded yet, the message says why),
``loaded`` (a vram standby's idle engine answers: the message holds its port), ``skipped`` (the
cache is full of weights in use: the bytes are in the message), ``failed`` (the last fetch, or a
vram standby's engine, failed; tried again), ``unavailable`` (the manifest has no weights for it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from gridplace.executor.cache import Prewarmer
from gridplace.executor.manifest import WeightSource
from gridplace.executor.standby_engines import StandbyEngines, standby_spec
from gridplace.specs.plan import Prewarm, PrewarmLevel

log = logging.getLogger("gridplace.executor")
WeightsOf = Callable[[str, str], WeightSource | None]  # (workload, precision) -> its weights


class StandbyKeeper:
    """Keeps the node's standbys' weights in its cache (see the module docstring)."""

    def __init__(self, weights_of: WeightsOf, prewarmer: Prewarmer) -> None:
        self.weights_of = weights_of
        self.prewarmer = prewarmer
        self._skipped: set[str] = set()  # sha256 reported skipped (logged once)

    def step(
        self,
        entries: Sequence[Prewarm],
        assigned_running: bool,
        pinned: Collection[str],
        engines: StandbyEngines | None = None,
        busy_gpus: Collection[int] = (),
    ) -> list[dict[str, Any]]:
        """Advance the standbys ``entries`` (the plan's, for this node) and report each.
        ``assigned_running``: every replica assigned here runs; ``pinned``: the weights of
        assigned and live replicas (never evicted); ``engines``: where vram standbys' engines
        run (None: held on disk); ``busy_gpus``: GPUs of assigned and live replicas."""
        vram = [e for e in entries if e.level is PrewarmLevel.VRAM]
        if engines is not None:
            engines.sync({standby_spec(e) for e in vram})
        sources = [self.weights_of(e.workload, e.precision.value) for e in entries]
        held = {s.sha256 for s in sources if s is not None and self.prewarmer.ready(s)}
        keep = {*pinned, *held}
        started = any(s is not None and self.prewarmer.fetching(s) for s in sources)
        items = []
        for entry, source in zip(entries, sources, strict=True):
            state, message = self._advance(source, assigned_running, keep, started)
            started = started or (source is not None and self.prewarmer.fetching(source))
            if entry.level is PrewarmLevel.VRAM and state == "ready" and source is not None:
                if engines is None:
                    message = "held on disk: this agent runs no standby engines"
                else:
                    path = self.prewarmer.ready(source)
                    spec = standby_spec(entry)
                    state, message = engines.ensure(spec, path, busy_gpus, assigned_running)
            item: dict[str, Any] = {
                "workload": entry.workload,
                "precision": entry.precision.value,
                "level": entry.level.value,
                "state": state,
            }
            if message:
                item["message"] = message
            items.append(item)
        return items

    def _advance(
        self, source: WeightSource | None, assigned_running: bool, keep: set[str], busy: bool
    ) -> tuple[str, str]:
        if source is None:
            return "unavailable", "no weights for it in the manifest"
        if self.prewarmer.ready(source) is not None:
            return "ready", ""
        if self.prewarmer.fetching(source):
            return "fetching", ""
        if not assigned_running:
            return "waiting", "assigned replicas start first"
        need = source.size_bytes or 0
        if not self.prewarmer.cache.fits(need, keep):
            if source.sha256 not in self._skipped:
                log.warning("standby %s skipped: the cache is full", source.file_name)
                self._skipped.add(source.sha256)
            return "skipped", (
                f"{need} bytes do not fit beside the weights in use "
                f"(cache {self.prewarmer.cache.max_bytes} bytes)"
            )
        if busy:
            return "waiting", "another standby is fetching"
        self._skipped.discard(source.sha256)
        self.prewarmer.request(source, keep, standby=True)
        if self.prewarmer.ready(source) is not None:  # a synchronous pre-warmer is done already
            return "ready", ""
        error = self.prewarmer.errors.get(source.sha256)  # the last try's (this one's if done)
        if error:
            return "failed", f"{error}; tried again"
        return "fetching", ""
