"""An in-memory ``Runtime`` and a settable clock for reconcile tests: processes are records,
health and in-flight counts are set by the test, and every call is logged in order."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from gridplace.executor.drivers import CommandDriver, LaunchSpec
from gridplace.executor.launcher import Launcher
from gridplace.executor.manifest import DriverKind, Manifest
from gridplace.executor.process import ProcessId, ProcessRuntime
from gridplace.executor.reconcile import ReconcileConfig


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeProcess:
    replica_id: str
    launch: LaunchSpec
    alive: bool = True
    healthy: bool = False
    inflight: int = 0


@dataclass
class FakeRuntime:
    processes: dict[int, FakeProcess] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    healthy_on_launch: bool = True
    next_pid: int = 100
    fail_launch: bool = False

    def by_endpoint(self, endpoint: str) -> FakeProcess:
        return next(p for p in self.processes.values() if p.launch.endpoint == endpoint)

    def live(self) -> list[FakeProcess]:
        return [p for p in self.processes.values() if p.alive]

    def launch(self, launch: LaunchSpec, replica_id: str, log_path: Path) -> ProcessId:
        from gridplace.executor.errors import LaunchFailed

        if self.fail_launch:
            raise LaunchFailed("no such binary")
        self.next_pid += 1
        self.processes[self.next_pid] = FakeProcess(
            replica_id, launch, healthy=self.healthy_on_launch
        )
        self.events.append(f"launch {replica_id}")
        return ProcessId(self.next_pid, 1)

    def alive(self, process: ProcessId, replica_id: str) -> bool:
        found = self.processes.get(process.pid)
        return bool(found and found.alive and found.replica_id == replica_id)

    def find(self, replica_id: str) -> ProcessId | None:
        for pid, found in self.processes.items():
            if found.alive and found.replica_id == replica_id:
                return ProcessId(pid, 1)
        return None

    def stop(self, process: ProcessId, replica_id: str, timeout_s: float) -> None:
        found = self.processes.get(process.pid)
        if found and found.alive:
            found.alive = False
            self.events.append(f"stop {replica_id} inflight={found.inflight}")

    def _find_endpoint(self, endpoint: str) -> FakeProcess | None:
        port = endpoint.rsplit(":", 1)[1]
        for found in self.processes.values():
            if found.alive and found.launch.endpoint.endswith(f":{port}"):
                return found
        return None

    def healthy(self, endpoint: str, paths: tuple[str, ...]) -> bool:
        found = self._find_endpoint(endpoint)
        if found and found.healthy:
            self.events.append(f"healthy {found.replica_id}")
            return True
        return False

    def inflight(self, endpoint: str, metrics: tuple[str, ...]) -> int | None:
        found = self._find_endpoint(endpoint)
        return found.inflight if found else None

    def request_drain(self, endpoint: str, path: str) -> None:
        found = self._find_endpoint(endpoint)
        self.events.append(f"drain-request {found.replica_id if found else endpoint}")


def ports() -> object:
    counter = iter(range(30_000, 40_000))
    return lambda host: next(counter)


def launcher(manifest: Manifest | None = None, gpus: int = 4) -> Launcher:
    return Launcher(
        manifest=manifest or Manifest(),
        drivers={
            DriverKind.COMMAND: CommandDriver(
                "serve --port {port} --model {model} --gpus {gpus}", drain_path="/drain"
            )
        },
        default_driver=DriverKind.COMMAND,
        gpu_ids={i: str(i) for i in range(gpus)},
    )


def config(tmp: Path, **overrides: float) -> ReconcileConfig:
    values = {
        "start_deadline_s": 60.0,
        "drain_grace_s": 30.0,
        "stop_timeout_s": 1.0,
        "handover_s": 0.0,
        "backoff_initial_s": 10.0,
        "backoff_max_s": 100.0,
    }
    values.update(overrides)
    return ReconcileConfig(log_dir=tmp / "logs", **values)  # type: ignore[arg-type]


def reap_children(runtime: ProcessRuntime) -> None:
    """Kill and reap every process ``runtime`` started and still holds, so none is left to a later
    test's garbage collection (where its ``Popen`` would warn, and warnings are errors)."""
    for child in runtime._children.values():
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=5)
    runtime._children.clear()
