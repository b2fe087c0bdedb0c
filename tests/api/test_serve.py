"""``gridplace serve`` starts with no configuration at all: a real uvicorn in a subprocess, in an
empty directory, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import MagicMock

import httpx
import pytest

# Generous: readiness is polled, so a quick start passes at once, while a machine at load 8-11
# (imports of the app and its solver worker competing for 2 cores) has taken over 30 s to start
# and to shut down (the worker, still importing, is waited for).
STARTUP_TIMEOUT_S = 120
SHUTDOWN_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GRIDPLACE_")}


def start_serve(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``gridplace serve ARGS`` in a subprocess, its output piped (text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gridplace.api.cli", "serve", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_health(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}: {process.stderr.read()}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"{url}/healthz", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"no answer from {url} within {STARTUP_TIMEOUT_S} s")


def test_serve_starts_with_no_configuration(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gridplace.api.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}", process)
        assert health.status_code == 200 and health.json()["database"] == "sqlite"
        assert (tmp_path / "gridplace.db").exists()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=SHUTDOWN_TIMEOUT_S)
    assert process.returncode == 0, stderr
    token = next(line.strip() for line in stderr.splitlines() if line.strip().startswith("gpa."))
    assert "GRIDPLACE_ADMIN_TOKEN" in stderr
    # The token is stored hashed: it is not in the database file.
    assert token.encode() not in (tmp_path / "gridplace.db").read_bytes()


def test_serve_refuses_an_unusable_database_url(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridplace.api.cli", "serve", "--database-url", "mysql://x/y"],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not supported" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_keeps_idle_connections_past_the_agents_interval(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's default keep-alive (5 s) is the agent's interval: connections closed just as
    the next heartbeat was sent on them."""
    import uvicorn

    from gridplace.api.commands import serve
    from gridplace.executor.agent import AgentConfig

    calls: list[dict[str, object]] = []
    monkeypatch.setenv("GRIDPLACE_DATABASE_URL", "restored-after")  # _serve sets it for workers
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: calls.append(options))
    app = MagicMock()
    serve._serve(app, "postgresql+psycopg://x@/db", "127.0.0.1", 8700, workers, "info")
    keep_alive = calls[0]["timeout_keep_alive"]
    assert isinstance(keep_alive, int) and keep_alive >= 60 > 3 * AgentConfig.interval_s
