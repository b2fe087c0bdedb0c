"""A real ``gridplace serve`` (uvicorn in a subprocess, on loopback) against what an untrusted node
provider can send, and against the faults of its own process and database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ADMIN, ADMIN_TOKEN, node_doc, to_yaml
from tests.api.test_serve import (
    SHUTDOWN_TIMEOUT_S,
    clean_environment,
    free_port,
    start_serve,
    wait_for_health,
)

FIVE_MB = 5 * 2**20
# Bounds for conditions polled: generous, since a machine at load 8-11 on 2 cores has taken
# seconds for what takes milliseconds idle; a condition met sooner ends the wait at once.
WAIT_S = 120


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    database: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    database = tmp_path / "gridplace.db"
    env = clean_environment() | {
        "GRIDPLACE_ADMIN_TOKEN": ADMIN_TOKEN,
        "GRIDPLACE_DATABASE_URL": f"sqlite:///{database}",
        "GRIDPLACE_REPLAN_INTERVAL_S": "0",
    }
    process = start_serve(["--port", str(port)], tmp_path, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
        yield Server(url, process, database)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        # Also closes the pipes of a process a test killed.
        process.communicate(timeout=SHUTDOWN_TIMEOUT_S)


def node_token(server: Server, name: str) -> dict[str, str]:
    issued = httpx.post(f"{server.url}/v1/admin/nodes/{name}/tokens", headers=ADMIN)
    assert issued.status_code in (200, 201), issued.text
    return {"Authorization": f"Bearer {issued.json()['token']}"}


class HealthWatch:
    """Asks /healthz every 20 ms in a thread and keeps the slowest answer's time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest_s = 0.0
        self.answers = 0
        self._answered = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get(f"{self.url}/healthz").status_code == 200
                with self._answered:
                    self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
                    self.answers += 1
                    self._answered.notify_all()
                self._stop.wait(0.02)

    def wait_for(self, answers: int) -> None:
        """Until /healthz has answered ``answers`` times in all."""
        with self._answered:
            assert self._answered.wait_for(lambda: self.answers >= answers, timeout=WAIT_S), (
                f"/healthz answered {self.answers} times in {WAIT_S} s"
            )

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def five_mb_node(name: str) -> bytes:
    """A Node document padded to 5 MB with a long list (the costliest shape to parse)."""
    head = to_yaml(node_doc(name)).encode()
    padding = b"x:\n" + b"- 1\n" * ((FIVE_MB - len(head)) // 4)
    return head + padding


def cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has used (user + system, from /proc: Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_node_tokens_5mb_body_is_refused_fast_while_healthz_answers(
    server: Server, streamed: bool
) -> None:
    """Refused before it is parsed (parsing it is ~25 s of CPU) while /healthz goes on
    answering. "Fast" is the server's CPU for the refusal: wall-clock time on a loaded machine
    says more about the machine than about the server."""
    headers = node_token(server, "n1") | {"Content-Type": "application/yaml"}
    body = five_mb_node("n1")
    content: bytes | Iterator[bytes] = body
    if streamed:  # no Content-Length: the limit must count the bytes as they come
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    pid = server.process.pid
    with HealthWatch(server.url) as watch:
        watch.wait_for(3)  # answering before
        cpu_before = cpu_s(pid)
        response = httpx.put(
            f"{server.url}/v1/nodes/n1", content=content, headers=headers, timeout=WAIT_S
        )
        refusal_cpu_s = cpu_s(pid) - cpu_before  # the refusal's, and /healthz's meanwhile
        watch.wait_for(watch.answers + 3)  # and after
    assert response.status_code == 413, response.text
    assert "PUT /v1/nodes/{name}" in response.json()["message"]
    assert refusal_cpu_s < 1.0, f"the server spent {refusal_cpu_s:.2f} CPU s refusing it"
    # Parsing it on the event loop would stall /healthz for tens of seconds; a busy machine
    # delays an answer by well under a second.
    assert watch.slowest_s < 2.0, f"/healthz took {watch.slowest_s:.2f} s"


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (from /proc: Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# serve's descendants: its solver worker (spawned) and multiprocessing's resource tracker.
WORKER, TRACKER = "multiprocessing.spawn", "multiprocessing.resource_tracker"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_serve_leaves_no_orphan(server: Server) -> None:
    deadline = time.monotonic() + WAIT_S
    children: set[int] = set()
    started: set[str] = set()
    while time.monotonic() < deadline and started != {WORKER, TRACKER}:
        children = descendants(server.process.pid)
        lines = [command_line(pid) for pid in children]
        started = {kind for kind in (WORKER, TRACKER) if any(kind in line for line in lines)}
        time.sleep(0.2)
    assert started == {WORKER, TRACKER}, f"serve started {sorted(started)} of its processes"
    server.process.kill()
    server.process.wait(timeout=WAIT_S)
    # A worker notices within PARENT_CHECK_S once its watchdog runs, which is after its imports
    # (seconds on a loaded machine): polled, with a generous bound.
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.1)
    orphans = [pid for pid in children if alive(pid)]
    for pid in orphans:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not orphans, f"{len(orphans)} of {len(children)} worker processes outlived serve"
