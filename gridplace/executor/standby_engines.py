"""Idle engines of ``vram`` standbys: a server loaded on the standby's GPUs that serves nobody
until a plan assigns its workload here; then the reconciler adopts its process as the replica.

Owns: the engines' rows (table ``standbys`` of the agent's state file, so a restarted agent finds
them again by their marker), launching one (the replica's ``Launcher``/driver path, on GPUs no
assigned or live replica uses), its health (loaded once it answers), its retry backoff, stopping
it when the plan drops its standby or an assigned replica needs its GPUs (assigned wins), and
handing its process over (``take``/``release``).
Must not: decide the replicas (``reconcile``), fetch weights (``standby``) or talk to the API.
Its endpoint is never a replica's: the node report lists it as a standby only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.errors import DriverError, LaunchFailed
from gridplace.executor.launcher import Launcher, launching_record
from gridplace.executor.process import ProcessId, Runtime
from gridplace.executor.state import Phase, ReplicaRecord, StateFile
from gridplace.specs.plan import Prewarm

if TYPE_CHECKING:
    from gridplace.executor.reconcile import ReconcileConfig

log = logging.getLogger("gridplace.executor")


def standby_spec(entry: Prewarm) -> ReplicaSpec:
    """The replica a standby would become (ordinal 0; ``take`` ignores the ordinal)."""
    return ReplicaSpec(
        workload=entry.workload,
        gpus=tuple(entry.gpus),
        precision=entry.precision.value,
        tensor_parallel=entry.tensor_parallel,
        gpu_share=entry.gpu_share,
    )


class StandbyEngines:
    """The node's idle standby engines (see the module docstring)."""

    def __init__(
        self,
        state: StateFile,
        runtime: Runtime,
        launcher: Launcher,
        config: ReconcileConfig,
        clock: Callable[[], float],
        port_allocator: Callable[[], int],
    ) -> None:
        self.state = state
        self.runtime = runtime
        self.launcher = launcher
        self.config = config
        self.clock = clock
        self.port_allocator = port_allocator  # a free port no replica or engine holds

    def _row(self, spec: ReplicaSpec) -> ReplicaRecord | None:
        return next((r for r in self.state.records() if r.spec == spec), None)

    def _stop(self, record: ReplicaRecord, why: str) -> None:
        if record.pid is not None:
            process = ProcessId(record.pid, record.pid_start_ticks)
            self.runtime.stop(process, record.replica_id, self.config.stop_timeout_s)
        self.state.delete(record.replica_id)
        log.info("standby engine %s (%s) stopped: %s", record.replica_id, record.spec.key, why)

    def ports(self) -> set[int]:
        return {r.port for r in self.state.records() if r.port is not None}

    def sync(self, wanted: Collection[ReplicaSpec]) -> None:
        """Stop the engines of standbys the plan dropped."""
        for record in self.state.records():
            if record.spec not in wanted:
                self._stop(record, "the plan dropped its standby")

    def forget(self, adopted: Collection[str]) -> None:
        """Drop rows a replica already adopted (``adopted``: the replicas' ids): the agent
        stopped between writing the replica's row and removing the standby's."""
        for record in self.state.records():
            if record.replica_id in adopted:
                self.state.delete(record.replica_id)

    def yield_gpus(self, desired: Sequence[ReplicaSpec], keep: Collection[ReplicaSpec]) -> None:
        """Stop every engine on GPUs a desired replica uses, except those in ``keep`` (a start
        that adopts it): an assigned replica always wins over a standby."""
        needed = {g for spec in desired for g in spec.gpus}
        for record in self.state.records():
            if record.spec not in keep and needed & set(record.spec.gpus):
                self._stop(record, "an assigned replica needs its GPUs")

    def take(self, spec: ReplicaSpec) -> ReplicaRecord | None:
        """The live engine that ``spec`` can adopt (same workload, GPUs, precision, degree and
        share), or None; the caller writes it as its replica, then calls ``release``."""
        if spec.pipeline:
            return None
        record = self._row(replace(spec, ordinal=0))
        if record is None or record.pid is None or not record.has_process:
            return None
        if not self.runtime.alive(ProcessId(record.pid, record.pid_start_ticks), record.replica_id):
            return None
        return record

    def release(self, replica_id: str) -> None:
        self.state.delete(replica_id)

    def ensure(
        self, spec: ReplicaSpec, weights: Path | None, busy: Collection[int], may_launch: bool
    ) -> tuple[str, str]:
        """Advance ``spec``'s engine one step: (standby state, message). Launches it only when
        ``may_launch`` (the assigned replicas run) and none of its GPUs is in ``busy``."""
        now = self.clock()
        record = self._row(spec)
        if record is not None and record.phase is Phase.FAILED:
            if record.next_retry_at is not None and now < record.next_retry_at:
                return "failed", record.message or "the engine failed"
        elif record is not None:
            return self._observe(record, now)
        taken = sorted(set(spec.gpus) & set(busy))
        if taken:
            return "ready", f"held on disk: GPUs {taken} are in use by replicas"
        if not may_launch:
            return "ready", "held on disk until the assigned replicas run"
        return self._launch(spec, weights, record, now)

    def _observe(self, record: ReplicaRecord, now: float) -> tuple[str, str]:
        if record.phase is Phase.LAUNCHING:  # the agent stopped inside the launch
            found = self.runtime.find(record.replica_id)
            if found is None:
                self.state.delete(record.replica_id)
                return "ready", "the engine's launch was rolled back"
            record = self.state.update(
                record, now, phase=Phase.STARTING, pid=found.pid, pid_start_ticks=found.start_ticks
            )
        if record.pid is None or not self.runtime.alive(
            ProcessId(record.pid, record.pid_start_ticks), record.replica_id
        ):
            return self._fail(record, now, "the engine exited")
        loaded = f"idle engine on port {record.port}"
        if record.phase is Phase.RUNNING:
            return "loaded", loaded
        if self.runtime.healthy(record.endpoint or "", record.health_paths):
            self.state.update(record, now, phase=Phase.RUNNING, attempts=0, message=None)
            log.info("standby engine %s (%s) loaded", record.replica_id, record.spec.key)
            return "loaded", loaded
        if record.deadline_at is not None and now >= record.deadline_at:
            self._stop(record, "not healthy within the start deadline")
            deadline = f"not healthy within the start deadline of {self.config.start_deadline_s:g}s"
            return self._fail(record, now, deadline)
        return "ready", f"engine starting on port {record.port}"

    def _fail(self, record: ReplicaRecord, now: float, message: str) -> tuple[str, str]:
        attempts = record.attempts + 1
        delay_s = self.config.retry_delay_s(attempts)
        self.state.put(
            replace(
                record,
                phase=Phase.FAILED,
                pid=None,
                pid_start_ticks=None,
                attempts=attempts,
                next_retry_at=now + delay_s,
                message=f"{message}; tried again in {delay_s:.0f}s",
                updated_at=now,
            )
        )
        log.warning("standby engine %s (%s): %s", record.replica_id, record.spec.key, message)
        return "failed", f"{message}; tried again in {delay_s:.0f}s"

    def _launch(
        self, spec: ReplicaSpec, weights: Path | None, previous: ReplicaRecord | None, now: float
    ) -> tuple[str, str]:
        replica_id = f"{spec.workload}-standby-{uuid.uuid4().hex[:10]}"
        port = self.port_allocator()
        host = self.config.listen_host
        attempts = previous.attempts if previous else 0
        if previous is not None:
            self.state.delete(previous.replica_id)
        record = ReplicaRecord(
            replica_id, spec, None, Phase.LAUNCHING, attempts=attempts, updated_at=now
        )
        try:
            launch = self.launcher.launch_spec(spec, replica_id, host, port, weights)
        except DriverError as error:
            return self._fail(record, now, error.message)
        record = launching_record(record, launch, (host, port), now, self.config.start_deadline_s)
        self.state.put(record)  # before the process exists: a crash here is rolled back
        try:
            log_path = self.config.log_dir / f"{replica_id}.log"
            process = self.runtime.launch(launch, replica_id, log_path)
        except LaunchFailed as error:
            return self._fail(record, now, error.message)
        self.state.update(
            record, now, phase=Phase.STARTING, pid=process.pid, pid_start_ticks=process.start_ticks
        )
        log.info("standby engine %s (%s) started on port %d", replica_id, spec.key, port)
        return "ready", f"engine starting on port {port}"
