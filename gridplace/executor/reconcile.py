"""The reconcile step: observe the replicas, diff them against the desired ones, act, report.

Owns: the life cycle of replicas (``state`` phases), make before break, the start deadline and
the retry backoff, drain before stop, and what is pending and why (the report on it is built by
``report``).
Must not: talk to the API (``agent`` does) or block on a start: a start is launched in one step
and found healthy (or past its deadline) in a later one, so heartbeats keep flowing.

Guarantees the agent gives alone, on its node:
- level-triggered and idempotent: a step with nothing to change changes nothing;
- make before break: an undesired replica of workload W is drained only once every desired
  replica of W on this node is running, unless it holds GPUs a start needs (then the planner
  chose an in-place replacement; it is logged as break-before-make) — so a workload placed
  here never drops to zero here during a move;
- across nodes it cannot see the new place, so it relies on the API's generation ordering and
  waits ``handover_s`` after a workload leaves the node before draining it;
- never a duplicate: a launch is written to the state file before the process exists, and a row
  whose pid is unknown is resolved by finding the process by its marker;
- a start not healthy by its deadline is stopped, reported (Degraded) and retried after
  ``backoff_initial_s * 2**(attempts-1)`` seconds, capped at ``backoff_max_s``;
- a pipeline replica's server (its first stage) starts only once every later stage is ready,
  waits at most ``pipeline_wait_s`` (then fails like a start, and waits again after the backoff),
  and is stopped and reported failed when a later stage is not ready any more
  (``pipeline.head_gate``, on the stages' phases the agent read from the API this step);
- a vram standby's idle engine (``standby_engines``) on GPUs a desired replica needs is stopped
  before that replica starts, unless it is that replica: then its process is adopted (no launch).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from gridplace.executor.diff import Actual, ReplicaSpec, compute_diff
from gridplace.executor.errors import DriverError, LaunchFailed
from gridplace.executor.launcher import Launcher, free_port, launching_record
from gridplace.executor.manifest import DriverKind, WeightSource
from gridplace.executor.pipeline import (
    Gate,
    Pipeline,
    head_gate,
    ray_head_address,
)
from gridplace.executor.process import ProcessId, Runtime
from gridplace.executor.report import WEIGHTS_DOWNLOADING, StateReporter
from gridplace.executor.standby_engines import StandbyEngines
from gridplace.executor.state import Phase, ReplicaRecord, StateFile

log = logging.getLogger("gridplace.executor")


@dataclass(frozen=True)
class ReconcileConfig:
    start_deadline_s: float = 600.0  # vLLM loading a 70B model takes minutes
    drain_grace_s: float = 30.0
    stop_timeout_s: float = 15.0  # SIGTERM -> SIGKILL
    handover_s: float = 30.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 600.0
    listen_host: str = "127.0.0.1"
    advertise_host: str = "127.0.0.1"
    log_dir: Path = Path("gridplace-agent-logs")
    pipeline_wait_s: float = 600.0  # a pipeline's server waits this long for its stages

    def retry_delay_s(self, attempts: int) -> float:
        """Seconds before retry number ``attempts`` (1 = the first): doubling, capped."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (attempts - 1))


class Prewarming(Protocol):
    """What the reconciler asks of the pre-warmer (``cache.Prewarmer`` implements it)."""

    errors: dict[str, str]  # sha256 -> why its last fetch failed

    def ready(self, source: WeightSource) -> Path | None: ...

    def request(self, source: WeightSource, pinned: Collection[str]) -> None: ...


@dataclass
class StepOutcome:
    report: dict[str, Any]
    actions: list[str] = field(default_factory=list)  # what this step did, for logs and tests
    applied: bool = False


class Reconciler:
    def __init__(
        self,
        state: StateFile,
        runtime: Runtime,
        launcher: Launcher,
        config: ReconcileConfig,
        prewarmer: Prewarming | None = None,
        clock: Callable[[], float] = time.time,
        port_allocator: Callable[[str], int] = free_port,
    ) -> None:
        self.state = state
        self.runtime = runtime
        self.launcher = launcher
        self.config = config
        self.prewarmer = prewarmer
        self.clock = clock
        self.port_allocator = port_allocator
        self._adoption_checked = False
        self.reporter = StateReporter(config.advertise_host, clock)
        self._pending: dict[ReplicaSpec, str] = {}  # desired, not launched: why
        self.pipelines: Mapping[str, Pipeline] = {}  # this step's, by id
        self._waiting_since: dict[ReplicaSpec, float] = {}  # pipeline parts waiting for peers
        self.standbys = StandbyEngines(
            state.sibling("standbys"), runtime, launcher, config, clock, self._free_port
        )

    def _free_port(self) -> int:
        """A port no replica or standby engine of this node holds."""
        used = {r.port for r in self.state.records() if r.port is not None} | self.standbys.ports()
        port = self.port_allocator(self.config.listen_host)
        while port in used:
            port = self.port_allocator(self.config.listen_host)
        return port

    # ------------------------------------------------------------------------------- observe

    def _fail(self, record: ReplicaRecord, now: float, message: str) -> ReplicaRecord:
        attempts = record.attempts + 1
        delay_s = self.config.retry_delay_s(attempts)
        log.warning(
            "replica %s (%s) failed: %s; retry %d in %.0fs",
            record.replica_id,
            record.spec.key,
            message,
            attempts,
            delay_s,
        )
        return self.state.update(
            record,
            now,
            phase=Phase.FAILED,
            pid=None,
            pid_start_ticks=None,
            attempts=attempts,
            next_retry_at=now + delay_s,
            message=message,
        )

    def _stop(self, record: ReplicaRecord) -> None:
        if record.pid is not None:
            process = ProcessId(record.pid, record.pid_start_ticks)
            self.runtime.stop(process, record.replica_id, self.config.stop_timeout_s)

    def observe(self, actions: list[str]) -> None:
        """Bring every row up to date with what the processes are doing now."""
        first = not self._adoption_checked
        self._adoption_checked = True
        if first:
            self.standbys.forget({r.replica_id for r in self.state.records()})
        for record in self.state.records():
            now = self.clock()
            if record.phase is Phase.LAUNCHING:
                found = self.runtime.find(record.replica_id)
                if found is None:
                    self.state.delete(record.replica_id)
                    actions.append(f"rollback-launch {record.spec.key}")
                    log.info("launch of %s never started a process: rolled back", record.replica_id)
                    continue
                record = self.state.update(
                    record,
                    now,
                    phase=Phase.STARTING,
                    pid=found.pid,
                    pid_start_ticks=found.start_ticks,
                )
                actions.append(f"adopt-launch {record.spec.key}")
            if not record.has_process or record.pid is None:
                continue
            process = ProcessId(record.pid, record.pid_start_ticks)
            if not self.runtime.alive(process, record.replica_id):
                if record.phase is Phase.DRAINING:
                    self.state.delete(record.replica_id)
                    actions.append(f"stopped {record.spec.key}")
                else:
                    what = "while starting" if record.phase is Phase.STARTING else "unexpectedly"
                    self._fail(record, now, f"the server exited {what}")
                    actions.append(f"exited {record.spec.key}")
                continue
            if first and record.phase is Phase.RUNNING:
                if self.runtime.healthy(record.endpoint or "", record.health_paths):
                    actions.append(f"adopt {record.spec.key}")
                    log.info("adopted running replica %s (pid %d)", record.replica_id, record.pid)
                else:  # alive but not answering: give it a start deadline to recover
                    record = self.state.update(
                        record,
                        now,
                        phase=Phase.STARTING,
                        deadline_at=now + self.config.start_deadline_s,
                    )
            if record.phase is Phase.STARTING:
                if self.runtime.healthy(record.endpoint or "", record.health_paths):
                    self.state.update(record, now, phase=Phase.RUNNING, attempts=0, message=None)
                    actions.append(f"healthy {record.spec.key}")
                    log.info(
                        "replica %s (%s) is healthy at %s",
                        record.replica_id,
                        record.spec.key,
                        record.endpoint,
                    )
                elif record.deadline_at is not None and now >= record.deadline_at:
                    self._stop(record)
                    self._fail(
                        record,
                        now,
                        f"not healthy within the start deadline of "
                        f"{self.config.start_deadline_s:g}s",
                    )
                    actions.append(f"deadline {record.spec.key}")
            elif record.phase is Phase.DRAINING:
                inflight = self.runtime.inflight(record.endpoint or "", record.inflight_metrics)
                past = record.drain_deadline_at is not None and now >= record.drain_deadline_at
                if inflight == 0 or past:
                    self._stop(record)
                    self.state.delete(record.replica_id)
                    actions.append(f"stopped {record.spec.key}")
                    log.info(
                        "replica %s (%s) stopped (%s)",
                        record.replica_id,
                        record.spec.key,
                        "drained" if inflight == 0 else f"grace period over, {inflight} in flight",
                    )

    # ------------------------------------------------------------------------------------ act

    def _begin_drain(self, record: ReplicaRecord, why: str, actions: list[str]) -> None:
        now = self.clock()
        # Never served, or a pipeline stage's own process (no requests of its own): stop now.
        if record.phase is not Phase.RUNNING or record.spec.part:
            self._stop(record)
            self.state.delete(record.replica_id)
            actions.append(f"stopped {record.spec.key}")
            return
        if record.drain_path and record.endpoint:
            self.runtime.request_drain(record.endpoint, record.drain_path)
        self.state.update(
            record,
            now,
            phase=Phase.DRAINING,
            drain_deadline_at=now + self.config.drain_grace_s,
            message=why,
        )
        actions.append(f"drain {record.spec.key}")
        log.info("draining replica %s (%s): %s", record.replica_id, record.spec.key, why)

    def _launch(
        self,
        spec: ReplicaSpec,
        generation: int | None,
        weights: Path | None,
        previous: ReplicaRecord | None,
        actions: list[str],
        workers: tuple[str, ...] = (),
    ) -> None:
        now = self.clock()
        self._waiting_since.pop(spec, None)
        replica_id = f"{spec.workload}-{uuid.uuid4().hex[:10]}"
        port = self._free_port()
        attempts = previous.attempts if previous else 0
        try:
            launch = self.launcher.launch_spec(
                spec,
                replica_id,
                self.config.listen_host,
                port,
                weights,
                self.pipelines.get(spec.pipeline),
                self.config.advertise_host,
                workers,
            )
        except DriverError as error:
            record = ReplicaRecord(replica_id, spec, generation, Phase.FAILED, attempts=attempts)
            if previous is not None:
                self.state.delete(previous.replica_id)
            self._fail(record, now, error.message)
            actions.append(f"driver-error {spec.key}")
            return
        record = launching_record(
            ReplicaRecord(replica_id, spec, generation, Phase.LAUNCHING, attempts=attempts),
            launch,
            (self.config.listen_host, port),
            now,
            self.config.start_deadline_s,
        )
        self.state.put(record)  # before the process exists: a crash here is rolled back
        if previous is not None:
            self.state.delete(previous.replica_id)
        log_path = self.config.log_dir / f"{replica_id}.log"
        try:
            process = self.runtime.launch(launch, replica_id, log_path)
        except LaunchFailed as error:
            self._fail(record, now, error.message)
            actions.append(f"launch-failed {spec.key}")
            return
        self.state.update(
            record,
            self.clock(),
            phase=Phase.STARTING,
            pid=process.pid,
            pid_start_ticks=process.start_ticks,
        )
        actions.append(f"start {spec.key}")
        log.info(
            "started replica %s (%s) pid %d on port %d, log %s",
            replica_id,
            spec.key,
            process.pid,
            port,
            log_path,
        )

    def _weights_ready(self, spec: ReplicaSpec, pinned: list[str]) -> tuple[bool, Path | None]:
        source = self.launcher.weights(spec)
        if source is None:
            return True, None
        if self.prewarmer is None:
            return False, None
        path = self.prewarmer.ready(source)
        if path is None:
            self.prewarmer.request(source, pinned)
            path = self.prewarmer.ready(source)  # a synchronous pre-warmer is done already
        return path is not None, path

    def step(
        self,
        desired: Sequence[ReplicaSpec] | None,
        generation: int | None,
        pipelines: Mapping[str, Pipeline] | None = None,
    ) -> StepOutcome:
        """One pass; ``desired`` None means no plan is known yet (nothing is changed).
        ``pipelines``: the pipeline replicas this node holds a stage of, with their stages'
        phases as the API judged them (``peers`` None when it did not answer)."""
        actions: list[str] = []
        self.pipelines = pipelines or {}
        self.observe(actions)
        self._take_down_pipelines(actions)
        self._pending = {}
        if desired is None:
            return self._outcome(None, generation, actions)
        desired = self.launcher.expand(desired)
        self._waiting_since = {s: t for s, t in self._waiting_since.items() if s in set(desired)}
        records = {r.replica_id: r for r in self.state.records()}
        live = [r for r in records.values() if r.phase is not Phase.FAILED]
        covered = Counter(r.spec for r in live if r.phase is not Phase.DRAINING)
        uncovered = Counter(desired) - covered
        previous_failed: dict[ReplicaSpec, list[ReplicaRecord]] = {}
        backing_off: Counter[ReplicaSpec] = Counter()
        now = self.clock()
        for record in sorted(
            (r for r in records.values() if r.phase is Phase.FAILED), key=lambda r: r.replica_id
        ):
            if uncovered[record.spec] <= 0:  # no longer wanted here, or already running
                self.state.delete(record.replica_id)
                del records[record.replica_id]
                continue
            uncovered[record.spec] -= 1
            if record.next_retry_at is not None and now < record.next_retry_at:
                backing_off[record.spec] += 1
                self._pending[record.spec] = record.message or "failed"
            else:
                previous_failed.setdefault(record.spec, []).append(record)
        startable = list((Counter(desired) - backing_off).elements())
        diff = compute_diff(
            startable,
            [Actual(r.replica_id, r.spec, stopping=r.phase is Phase.DRAINING) for r in live],
        )
        pinned = self.pinned(desired)
        for spec in desired:  # pre-warm everything this generation wants here
            source = self.launcher.weights(spec)
            if source and self.prewarmer and self.prewarmer.ready(source) is None:
                self.prewarmer.request(source, pinned)
        self.standbys.yield_gpus(desired, {replace(s.spec, ordinal=0) for s in diff.starts})
        for start in diff.starts:
            blockers = [records[rid] for rid in start.wait_for if rid in records]
            if blockers:
                for blocker in blockers:
                    if blocker.phase is not Phase.DRAINING:
                        if start.in_place:
                            log.warning(
                                "break before make: %s holds the GPUs its replacement %s needs",
                                blocker.replica_id,
                                start.spec.key,
                            )
                        self._begin_drain(blocker, f"GPUs needed by {start.spec.key}", actions)
                self._pending[start.spec] = "waiting for its GPUs to be freed"
                continue
            if self._adopt_standby(start.spec, generation, actions):
                continue
            ready, path = self._weights_ready(start.spec, pinned)
            if not ready:
                self._pending[start.spec] = WEIGHTS_DOWNLOADING
                continue
            retried = previous_failed.get(start.spec) or []
            previous = retried.pop(0) if retried else None
            gate = self._pipeline_gate(start.spec)
            if gate is not None and not gate.go:
                self._wait_for_stages(start.spec, gate, generation, previous, actions)
                continue
            workers = gate.workers if gate else ()
            self._launch(start.spec, generation, path, previous, actions, workers)
        self._stop_undesired(desired, diff.stops, records, actions)
        return self._outcome(desired, generation, actions)

    def _adopt_standby(self, spec: ReplicaSpec, generation: int | None, actions: list[str]) -> bool:
        """Serve ``spec`` from the idle engine of its vram standby, if one runs here: its row
        becomes the replica's (written before the standby's is removed), nothing is launched."""
        engine = self.standbys.take(spec)
        if engine is None:
            return False
        now = self.clock()
        loaded = engine.phase is Phase.RUNNING
        self.state.put(
            replace(
                engine,
                spec=spec,
                generation=generation,
                phase=Phase.RUNNING if loaded else Phase.STARTING,
                deadline_at=engine.deadline_at if not loaded else None,
                message=None,
                updated_at=now,
            )
        )
        self.standbys.release(engine.replica_id)
        actions.append(f"adopt-standby {spec.key}")
        log.info("replica %s served by standby engine %s", spec.key, engine.replica_id)
        return True

    def gpus_in_use(self, desired: Sequence[ReplicaSpec]) -> set[int]:
        """GPUs of the desired replicas and of every live one (a standby engine stays off)."""
        live = [r.spec for r in self.state.records() if r.phase is not Phase.FAILED]
        return {g for spec in [*desired, *live] for g in spec.gpus}

    # ------------------------------------------------------------------------------ pipelines

    def _pipeline_gate(self, spec: ReplicaSpec) -> Gate | None:
        """What a pipeline part waits for before it starts (None: nothing)."""
        if not spec.pipeline:
            return None
        pipeline = self.pipelines.get(spec.pipeline)
        if spec.part == "":
            return head_gate(pipeline)
        vllm_worker = spec.stage >= 1 and self.launcher.kind(spec) is DriverKind.VLLM
        if vllm_worker and ray_head_address(pipeline) is None:
            return Gate(False, why="the first stage's Ray head is not ready")
        return None

    def _wait_for_stages(
        self,
        spec: ReplicaSpec,
        gate: Gate,
        generation: int | None,
        previous: ReplicaRecord | None,
        actions: list[str],
    ) -> None:
        """Pending while under ``pipeline_wait_s``; past it, failed (retried after the backoff;
        a failed row waiting again keeps its phase, and says what it waits for)."""
        now = self.clock()
        since = self._waiting_since.setdefault(spec, now)
        limit_s = self.config.pipeline_wait_s
        if now - since < limit_s:
            waited = f"{now - since:.0f}s of {limit_s:g}s"
            why = f"waiting for the pipeline's stages ({waited}): {gate.why}"
            self._pending[spec] = why
            if previous is not None and previous.message != why:
                self.state.update(previous, now, message=why)
            return
        del self._waiting_since[spec]
        attempts = previous.attempts if previous else 0
        record = ReplicaRecord(
            f"{spec.workload}-{uuid.uuid4().hex[:10]}",
            spec,
            generation,
            Phase.FAILED,
            attempts=attempts,
        )
        if previous is not None:
            self.state.delete(previous.replica_id)
        self._fail(
            record, now, f"the pipeline's stages were not ready within {limit_s:g}s: {gate.why}"
        )
        actions.append(f"pipeline-timeout {spec.key}")

    def _take_down_pipelines(self, actions: list[str]) -> None:
        """Stop a pipeline's server whose later stages are not all ready (when they are known)."""
        now = self.clock()
        for record in self.state.records():
            if not record.spec.pipeline or record.spec.part or not record.has_process:
                continue
            if record.phase is Phase.DRAINING:
                continue
            pipeline = self.pipelines.get(record.spec.pipeline)
            if pipeline is None or pipeline.peers is None:
                continue  # not known this step: keep what runs
            gate = head_gate(pipeline)
            if gate.go:
                continue
            self._stop(record)
            self._fail(record, now, f"pipeline down: {gate.why}")
            actions.append(f"pipeline-down {record.spec.key}")

    def _stop_undesired(
        self,
        desired: Sequence[ReplicaSpec],
        stops: Sequence[Any],
        records: Mapping[str, ReplicaRecord],
        actions: list[str],
    ) -> None:
        now = self.clock()
        current = {r.replica_id: r for r in self.state.records()}
        wanted_here = Counter(spec.workload for spec in desired)
        running = Counter(r.spec for r in current.values() if r.phase is Phase.RUNNING)
        running_desired = Counter(spec.workload for spec in (Counter(desired) & running).elements())
        for stop in stops:
            record = current.get(stop.replica_id)
            if record is None or record.phase is Phase.DRAINING:
                continue
            workload = record.spec.workload
            if wanted_here[workload] and running_desired[workload] < wanted_here[workload]:
                if record.message != "kept until its replacement is healthy":
                    self.state.update(record, now, message="kept until its replacement is healthy")
                continue  # make before break
            if not wanted_here[workload] and self.config.handover_s > 0:
                if record.leaving_since is None:
                    self.state.update(record, now, leaving_since=now)
                    continue
                if now - record.leaving_since < self.config.handover_s:
                    continue
            self._begin_drain(record, "no longer in the plan for this node", actions)

    def pinned(self, desired: Sequence[ReplicaSpec]) -> list[str]:
        """Weights that must not be evicted: those of desired and of live replicas."""
        specs = set(desired) | {r.spec for r in self.state.records()}
        sources = [self.launcher.weights(spec) for spec in specs]
        return sorted({s.sha256 for s in sources if s is not None})

    def _outcome(
        self, desired: Sequence[ReplicaSpec] | None, generation: int | None, actions: list[str]
    ) -> StepOutcome:
        # A standby's failed fetch is its own report's (``standby``), not the node's degradation.
        wanted = set(self.pinned(desired or []))
        errors = self.prewarmer.errors.items() if self.prewarmer else []
        fetch_errors = [message for sha256, message in errors if sha256 in wanted]
        report = self.reporter.report(
            self.state.records(), self._pending, desired, generation, fetch_errors
        )
        return StepOutcome(report=report.body, actions=actions, applied=report.applied)
