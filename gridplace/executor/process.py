"""Server processes: launching, recognising (after an agent restart), probing and stopping them.

Owns: everything that touches OS processes and the servers' HTTP probes, behind the ``Runtime``
protocol, so the reconcile loop is tested against an in-memory fake.
Must not: decide what to run (``reconcile``) or keep state across restarts (``state``).

Recognising a server: each launch carries ``GRIDPLACE_REPLICA_ID=<id>`` in its environment and
runs in a session of its own (so it outlives the agent, and a stop reaches its children). A pid
is the replica's only when the process is alive (not a zombie), started at the recorded time
(``/proc/<pid>/stat`` field 22, which defeats pid reuse) and still carries the marker. A launch
whose pid was never recorded (the agent died inside ``Popen``) is found by scanning ``/proc``
for the marker. Linux only (``/proc``); elsewhere only ``kill(pid, 0)`` is checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from gridplace.executor.drivers import PROBE_ALIVE, PROBE_TCP, LaunchSpec
from gridplace.executor.errors import LaunchFailed

log = logging.getLogger("gridplace.executor")
MARKER = "GRIDPLACE_REPLICA_ID"
PROBE_TIMEOUT_S = 2.0
REAP_TIMEOUT_S = 30.0  # a child no longer alive (see stop) finishing its exit
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start_ticks: int | None  # kernel start time (clock ticks since boot); None off Linux


class Runtime(Protocol):
    def launch(self, launch: LaunchSpec, replica_id: str, log_path: Path) -> ProcessId: ...

    def alive(self, process: ProcessId, replica_id: str) -> bool: ...

    def find(self, replica_id: str) -> ProcessId | None: ...

    def stop(self, process: ProcessId, replica_id: str, timeout_s: float) -> None: ...

    def healthy(self, endpoint: str, paths: tuple[str, ...]) -> bool: ...

    def inflight(self, endpoint: str, metrics: tuple[str, ...]) -> int | None: ...

    def request_drain(self, endpoint: str, path: str) -> None: ...


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of ``pid`` from /proc, None when it does not exist."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    return fields[0], int(fields[19])


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


def _accepts(endpoint: str) -> bool:
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def _marker(replica_id: str) -> bytes:
    return f"{MARKER}={replica_id}".encode()


def parse_metrics(text: str, names: tuple[str, ...]) -> int | None:
    """Sum of the Prometheus samples named in ``names``; None when none is present."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
            found = True
    return round(total) if found else None


class ProcessRuntime:
    """Real processes on this machine, and HTTP probes over ``http``."""

    def __init__(self, http: httpx.Client | None = None) -> None:
        self._http = http or httpx.Client(timeout=PROBE_TIMEOUT_S)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._linux = PROC.joinpath("self", "stat").exists()

    def launch(self, launch: LaunchSpec, replica_id: str, log_path: Path) -> ProcessId:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **launch.env, MARKER: replica_id}
        try:
            with open(log_path, "ab") as output:
                child = subprocess.Popen(
                    launch.argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives the agent; stop reaches its children
                )
        except OSError as error:
            raise LaunchFailed(f"cannot run {launch.argv[0]!r}: {error.strerror}") from error
        self._children[child.pid] = child
        stat = _stat(child.pid) if self._linux else None
        return ProcessId(child.pid, stat[1] if stat else None)

    def alive(self, process: ProcessId, replica_id: str) -> bool:
        child = self._children.get(process.pid)
        if child is not None and child.poll() is not None:  # reaps our own exited children
            del self._children[process.pid]
            return False
        if not self._linux:
            try:
                os.kill(process.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        stat = _stat(process.pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        if process.start_ticks is not None and stat[1] != process.start_ticks:
            return False  # the pid was reused by another process
        return _environ_has(process.pid, _marker(replica_id))

    def find(self, replica_id: str) -> ProcessId | None:
        if not self._linux:
            return None
        marker = _marker(replica_id)
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            # The session leader is the launched server; its children inherit the marker.
            try:
                if os.getsid(pid) != pid:
                    continue
            except OSError:
                continue
            if _environ_has(pid, marker):
                return ProcessId(pid, stat[1])
        return None

    def stop(self, process: ProcessId, replica_id: str, timeout_s: float) -> None:
        """SIGTERM to the server's session, then SIGKILL after ``timeout_s``."""
        if not self.alive(process, replica_id):
            return
        self._signal(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive(process, replica_id):
                self._reap(process.pid)
                return
            time.sleep(0.05)
        log.warning(
            "replica %s (pid %d) ignored SIGTERM for %gs: killing",
            replica_id,
            process.pid,
            timeout_s,
        )
        self._signal(process.pid, signal.SIGKILL)
        self._reap(process.pid)

    def _reap(self, pid: int) -> None:
        """Wait for our own child's exit: ``alive`` turns false while it is still exiting (its
        environment is gone before it is), and a child never waited for stays a zombie."""
        child = self._children.pop(pid, None)
        if child is None:
            return
        try:
            child.wait(timeout=REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # still exiting: a later ``alive`` reaps it
            self._children[pid] = child

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)  # the session (and process group) it leads
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def healthy(self, endpoint: str, paths: tuple[str, ...]) -> bool:
        """Any HTTP path answering 200, the port accepting a connection (``PROBE_TCP``), or
        nothing to probe (``PROBE_ALIVE``: the caller checked the process is alive)."""
        for path in paths:
            if path == PROBE_ALIVE:
                return True
            if path == PROBE_TCP:
                if _accepts(endpoint):
                    return True
                continue
            try:
                if self._http.get(f"http://{endpoint}{path}").status_code == 200:
                    return True
            except httpx.HTTPError:
                continue
        return False

    def inflight(self, endpoint: str, metrics: tuple[str, ...]) -> int | None:
        try:
            response = self._http.get(f"http://{endpoint}/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return parse_metrics(response.text, metrics)

    def request_drain(self, endpoint: str, path: str) -> None:
        try:
            self._http.post(f"http://{endpoint}{path}")
        except httpx.HTTPError as error:
            log.info("drain request to %s%s failed: %s", endpoint, path, error)
