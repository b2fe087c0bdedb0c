"""Cold starts and failover to standbys: how long a replica takes to serve after a start, and
what the run saw of it.

Owns: ``ColdStartSettings``, the start time of a replica by where its weights are (nowhere,
the node's disk, VRAM), and ``ColdStartReport`` (cold starts, requests sent while one of their
workload's replicas was starting, time to recover after a node loss). Must not: run events (the
engine does) or choose standbys (the planner's ``prewarm`` list does).

Times come from the performance model (``Predictor.cold_start``): download over the node's
``networkGbps`` (unless the weights are on its disk), disk read and host-to-device copy at its
PCIe bandwidth, then the engine's start. A node that comes back after a failure restarts its
replicas from its disk. A standby starts from what it holds: ``vram`` only needs to be attached
to the router (``VRAM_RESUME_S``), ``disk`` loads and starts the engine, and a standby run with
``prewarm`` off starts from nothing, as a replacement on a cold node would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridplace.planner.perfmodel import Predictor
from gridplace.sim.errors import SimSettingsError
from gridplace.sim.metrics import SimResult
from gridplace.specs import Node
from gridplace.specs.plan import PrewarmLevel

VRAM_RESUME_S = 2.0  # a loaded, idle engine put back behind the router (health check, routes)
DETECT_S = 15.0  # missed heartbeats before a node counts as lost and its standbys start


@dataclass(frozen=True)
class ColdStartSettings:
    """Cold starts on (restarts and failover to the plan's standbys)."""

    detect_s: float = DETECT_S
    prewarm: bool = True  # False: standbys hold nothing (failover to cold nodes)

    def __post_init__(self) -> None:
        if not 0 <= self.detect_s <= 3600:
            raise SimSettingsError("detect_s", self.detect_s, "must be in [0, 3600]")


def start_s(predictor: Predictor, node: Node, level: PrewarmLevel | None) -> float:
    """Seconds until a replica serves, starting from ``level`` (None: nothing on the node)."""
    if level is PrewarmLevel.VRAM:
        return VRAM_RESUME_S
    timing = predictor.cold_start(
        network_gbit_per_s=node.spec.network_gbps, cached=level is PrewarmLevel.DISK
    )
    return timing.total_s


@dataclass(frozen=True)
class ColdStartReport:
    """What cold starts cost a run."""

    cold_starts: int
    requests_during: int  # sent while a replica of their workload was starting
    recovery_s: tuple[float, ...]  # per start: from the node loss that caused it to serving
    failover_s: tuple[float, ...]  # the same, for standbys started by a failure only

    @property
    def mean_failover_s(self) -> float:
        return float(np.mean(self.failover_s)) if self.failover_s else 0.0

    @property
    def mean_recovery_s(self) -> float:
        return float(np.mean(self.recovery_s)) if self.recovery_s else 0.0

    @property
    def max_recovery_s(self) -> float:
        return max(self.recovery_s, default=0.0)

    @staticmethod
    def of(result: SimResult) -> ColdStartReport:
        """Summarize ``result.cold_starts``."""
        during = np.zeros(len(result.sent_s), dtype=bool)
        for replica, began, ready, _ in result.cold_starts:
            mine = result.workload == result.replica_workloads[replica]
            during |= mine & (result.sent_s >= began) & (result.sent_s < ready)
        return ColdStartReport(
            cold_starts=len(result.cold_starts),
            requests_during=int(during.sum()),
            recovery_s=tuple(ready - lost for _, _, ready, lost in result.cold_starts),
            # A standby's start begins at the failure itself; a restart when its node is back.
            failover_s=tuple(
                ready - lost for _, began, ready, lost in result.cold_starts if began == lost
            ),
        )
