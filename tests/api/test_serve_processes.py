"""Real ``gridplace serve`` processes: heartbeats answered 204 survive a clean shutdown and lose
at most the documented window on SIGKILL; two servers over one PostgreSQL never publish two plans
for one generation, share each node's rate limit, and each bound failed logins on its own."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridplace.api.app import FAILED_LOGIN_BURST
from gridplace.api.store import Store, create_store_engine
from gridplace.api.store.engine import scratch_schema
from tests.api.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    node_doc,
    node_token,
    postgres_url,
    small_grid,
    to_yaml,
    workload_doc,
)
from tests.api.test_serve import (
    SHUTDOWN_TIMEOUT_S,
    clean_environment,
    free_port,
    start_serve,
    wait_for_health,
)

MINIMAL = {"Prefer": "return=minimal"}
FLUSH_S = 0.2  # GRIDPLACE_HEARTBEAT_FLUSH_S of the SIGKILL test: the window it may lose


@contextlib.contextmanager
def serve(
    database_url: str, tmp_path: Path, **env: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A ``gridplace serve`` on a free loopback port; killed at the end if still running."""
    port = free_port()
    environment = clean_environment() | {"GRIDPLACE_ADMIN_TOKEN": ADMIN_TOKEN}
    environment |= {f"GRIDPLACE_{key.upper()}": value for key, value in env.items()}
    args = ["--port", str(port), "--database-url", database_url]
    process = start_serve(args, tmp_path, environment)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=SHUTDOWN_TIMEOUT_S)


def stored_ratios(database_url: str) -> dict[str, float | None]:
    store = Store(create_store_engine(database_url))
    try:
        return {
            r.name: r.node.status.thermal.throttle_ratio
            if r.node.status and r.node.status.thermal
            else None
            for r in store.nodes()
        }
    finally:
        store.close()


def send_round(client: httpx.Client, names: list[str], ratio: float) -> None:
    for name in names:
        report = {"healthy": True, "thermal": {"throttleRatio": ratio}}
        answer = client.post(f"/v1/nodes/{name}/telemetry", json=report, headers=MINIMAL)
        assert answer.status_code == 204, answer.text


def test_a_clean_shutdown_writes_every_buffered_heartbeat(
    database_url: str, tmp_path: Path
) -> None:
    # A flush period far longer than the test: only the shutdown's flush can write them.
    with serve(database_url, tmp_path, heartbeat_flush_s="60", replan_interval_s="0") as (
        url,
        process,
    ):
        names = [f"n{i}" for i in range(5)]
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
            for name in names:
                assert client.put(f"/v1/nodes/{name}", json=node_doc(name)).status_code == 201
            send_round(client, names, 0.25)
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down (the app's lifespan ends), then re-raises the signal it caught.
        assert process.wait(timeout=SHUTDOWN_TIMEOUT_S) in (0, -signal.SIGTERM)
    assert stored_ratios(database_url) == dict.fromkeys(names, 0.25)


def test_a_killed_server_loses_at_most_the_flush_window(database_url: str, tmp_path: Path) -> None:
    flush = {"heartbeat_flush_s": str(FLUSH_S), "replan_interval_s": "0"}
    with serve(database_url, tmp_path, **flush) as (url, process):
        names = [f"n{i}" for i in range(5)]
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
            for name in names:
                assert client.put(f"/v1/nodes/{name}", json=node_doc(name)).status_code == 201
            send_round(client, names, 0.1)
            time.sleep(5 * FLUSH_S)  # past the window: these must be written by now
            send_round(client, names, 0.2)  # within the window: may be lost
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    kept = stored_ratios(database_url)
    assert set(kept) == set(names)
    assert all(ratio in (0.1, 0.2) for ratio in kept.values()), kept


# --------------------------------------------------------- two servers over one PostgreSQL


@pytest.fixture
def postgres_database() -> Iterator[str]:
    base = postgres_url()
    if base is None:
        pytest.skip("two servers share PostgreSQL only (GRIDPLACE_TEST_POSTGRES_URL)")
    with scratch_schema(base, "t") as url:
        yield url


@contextlib.contextmanager
def two_servers(url: str, tmp_path: Path, **env: str) -> Iterator[list[httpx.Client]]:
    with contextlib.ExitStack() as stack:
        clients = []
        for _ in range(2):
            base, _process = stack.enter_context(serve(url, tmp_path, **env))
            clients.append(stack.enter_context(httpx.Client(base_url=base, timeout=120)))
        yield clients


def test_two_servers_never_publish_two_plans_for_one_generation(
    postgres_database: str, tmp_path: Path
) -> None:
    env = {"replan_interval_s": "0", "solve_in_subprocess": "false"}
    with two_servers(postgres_database, tmp_path, **env) as servers:
        small_grid(servers[0])  # type: ignore[arg-type]  # httpx.Client speaks TestClient's API
        body = to_yaml(workload_doc("chat"))
        headers = ADMIN | {"Content-Type": "application/yaml"}
        statuses: list[int] = []
        barrier = threading.Barrier(6)

        def submit(client: httpx.Client) -> None:
            barrier.wait()
            answer = client.post(
                "/v1/plans", content=body, headers=headers, params={"timeLimitSeconds": 2}
            )
            statuses.append(answer.status_code)

        threads = [threading.Thread(target=submit, args=(servers[i % 2],)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        plans = servers[1].get("/v1/plans", headers=ADMIN).json()["items"]
    assert all(status in (200, 409) for status in statuses), statuses
    generations = sorted(plan["generation"] for plan in plans)
    assert generations == list(range(1, len(generations) + 1))  # one plan each, no gap
    assert len(generations) == statuses.count(200)


def test_two_servers_share_a_nodes_rate_limit(postgres_database: str, tmp_path: Path) -> None:
    # Refilling one token in 1,000 s: only the burst is there to grant during the test.
    env = {"rate_limit_per_s": "0.001", "rate_limit_burst": "20", "replan_interval_s": "0"}
    with two_servers(postgres_database, tmp_path, **env) as servers:
        servers[0].put("/v1/nodes/a", json=node_doc("a"), headers=ADMIN).raise_for_status()
        token = node_token(servers[0], "a")  # type: ignore[arg-type]
        codes = [servers[i % 2].get("/v1/nodes/a", headers=token).status_code for i in range(40)]
    # One bucket of 20 for both (each server alone would grant 20: 40 in all).
    assert codes.count(200) == 20 and codes.count(429) == 20, codes


def test_failed_logins_are_bounded_per_server(postgres_database: str, tmp_path: Path) -> None:
    with two_servers(postgres_database, tmp_path, replan_interval_s="0") as servers:
        bad = {"Authorization": "Bearer gpn.0000000000000000.not-a-secret"}
        started = time.monotonic()
        codes = [servers[i % 2].get("/v1/nodes/a", headers=bad).status_code for i in range(60)]
        refilled = 2 * int(time.monotonic() - started + 1)  # one try per second and server
    # Each server keeps its own bucket per address (README: N servers allow N x the burst, then
    # N tries a second); one shared bucket would have answered 401 only FAILED_LOGIN_BURST times.
    refused = codes.count(401)
    assert 2 * FAILED_LOGIN_BURST <= refused <= 2 * FAILED_LOGIN_BURST + refilled, codes
    assert codes.count(429) == 60 - refused
