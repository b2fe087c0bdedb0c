"""Servers sharing one database: revocations, plan generations, rate limits and the periodic
replan agree across them; an agent's pull is answered from memory; ``--workers`` on SQLite is
refused. Two apps with their own stores stand for two server processes (each its own engine and
connections, so the database sees two clients); one test starts real ``serve --workers 2``."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from gridplace.api.replan import REPLAN_LOCK_ID
from gridplace.api.store import GenerationConflict, NewPlan, Store, create_store_engine
from tests.api.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    MakeClient,
    node_doc,
    node_token,
    register,
    small_grid,
    submit,
    workload_doc,
)
from tests.api.test_serve import clean_environment, free_port, start_serve, wait_for_health

NOTIFY_WAIT_S = 3.0


def wait_until(condition: Any, timeout_s: float = NOTIFY_WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_revocation_on_one_server_is_honoured_by_another(
    make_client: MakeClient, database_url: str
) -> None:
    # sync_interval_s is long: on PostgreSQL the NOTIFY alone must carry it within ms; SQLite
    # (one process in production) has only the poll, run here by hand.
    one = make_client(database_url, sync_interval_s=60)
    two = make_client(database_url, sync_interval_s=60)
    register(one, node_doc("a"))
    token = node_token(one, "a")
    assert two.get("/v1/nodes/a", headers=token).status_code == 200  # cached in two now
    token_id = one.get("/v1/admin/tokens", headers=ADMIN).json()["items"][0]["tokenId"]
    assert one.delete(f"/v1/admin/tokens/{token_id}", headers=ADMIN).status_code == 204
    assert one.get("/v1/nodes/a", headers=token).status_code == 401
    if database_url.startswith("postgresql"):
        assert wait_until(lambda: two.get("/v1/nodes/a", headers=token).status_code == 401)
    else:
        two.app.state.gridplace.shared.sync()  # what the 1 s poll does
        assert two.get("/v1/nodes/a", headers=token).status_code == 401


def test_a_plan_stored_by_one_server_is_served_by_another(
    make_client: MakeClient, database_url: str
) -> None:
    one = make_client(database_url, sync_interval_s=60)
    two = make_client(database_url, sync_interval_s=60)
    names = small_grid(one)
    token = node_token(one, names[0])
    first = two.get(f"/v1/nodes/{names[0]}/assignments", headers=token)
    assert first.status_code == 200 and first.headers["ETag"] == '"0"'
    generation = submit(one, workload_doc("chat"))["metadata"]["generation"]
    if not database_url.startswith("postgresql"):
        two.app.state.gridplace.shared.sync()
    expected = f'"{generation}"'

    def pulled() -> bool:
        answer = two.get(
            f"/v1/nodes/{names[0]}/assignments", headers=token | {"If-None-Match": '"0"'}
        )
        return answer.status_code == 200 and answer.headers["ETag"] == expected

    assert wait_until(pulled)


def test_a_pull_with_a_current_etag_reads_nothing_from_the_database(
    make_client: MakeClient,
) -> None:
    client = make_client(sync_interval_s=60)
    names = small_grid(client)
    token = node_token(client, names[0])
    submit(client, workload_doc("chat"))
    url = f"/v1/nodes/{names[0]}/assignments"
    first = client.get(url, headers=token)
    assert first.status_code == 200
    statements: list[str] = []
    engine = client.app.state.gridplace.store.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        again = client.get(url, headers=token)
        unchanged = client.get(url, headers=token | {"If-None-Match": first.headers["ETag"]})
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert again.status_code == 200 and again.content == first.content
    assert unchanged.status_code == 304
    assert statements == []


def test_servers_on_one_postgresql_agree_on_rate_limits(
    make_client: MakeClient, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite is served by one process; its buckets live in that process")
    limits = {"rate_limit_per_s": 0.001, "rate_limit_burst": 4}
    one = make_client(database_url, **limits)
    two = make_client(database_url, **limits)
    register(one, node_doc("a"))
    token = node_token(one, "a")
    codes = [
        server.get("/v1/nodes/a", headers=token).status_code for server in [one] * 5 + [two] * 5
    ]
    # One bucket for both: four answers in all (each server alone would grant eight).
    assert codes == [200] * 4 + [429] * 6
    assert "Retry-After" in two.get("/v1/nodes/a", headers=token).headers


def test_two_stores_never_publish_two_plans_for_one_generation(
    make_client: MakeClient, database_url: str
) -> None:
    client = make_client(database_url)
    small_grid(client)
    stored = submit(client, workload_doc("chat"))
    record = client.app.state.gridplace.store.latest_plan()
    assert record is not None and record.generation == stored["metadata"]["generation"]
    stores = [Store.open(database_url) for _ in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def write(store: Store) -> None:
        plan = record.plan.model_copy(
            update={"metadata": record.plan.metadata.model_copy(update={"generation": 2})}
        )
        new = NewPlan(
            plan=plan,
            base_generation=1,
            trigger="test",
            reasons=[],
            inputs=[],
            options={},
            basis={},
            explanation=[],
            compile_s=0.0,
            solve_s=0.0,
        )
        barrier.wait()
        try:
            store.add_plan(new, client.app.state.gridplace.clock())
            outcomes.append("stored")
        except GenerationConflict:
            outcomes.append("conflict")

    try:
        threads = [threading.Thread(target=write, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for store in stores:
            store.close()
    assert sorted(outcomes) == ["conflict", "stored"]
    assert [p["generation"] for p in client.get("/v1/plans", headers=ADMIN).json()["items"]] == [
        2,
        1,
    ]


def test_only_one_server_runs_the_periodic_check_at_a_time(
    make_client: MakeClient, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the lock is PostgreSQL's; SQLite has one server")
    one = make_client(database_url)
    two = make_client(database_url)
    small_grid(one)
    submit(one, workload_doc("chat"))
    with one.app.state.gridplace.store.exclusive(REPLAN_LOCK_ID) as held:
        assert held
        assert two.app.state.gridplace.replanner.check().skipped == "another-server"
    assert two.app.state.gridplace.replanner.check().skipped == "no-change"


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridplace.api.cli", "serve", "--workers", "2"],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "served by one process" in result.stderr and "Traceback" not in result.stderr


def test_acknowledged_heartbeats_survive_a_killed_server(database_url: str, tmp_path: Path) -> None:
    """Heartbeats are committed before their answer: SIGKILL loses none that was answered."""
    port = free_port()
    env = clean_environment() | {"GRIDPLACE_ADMIN_TOKEN": ADMIN_TOKEN}
    process = start_serve(["--port", str(port), "--database-url", database_url], tmp_path, env)
    url = f"http://127.0.0.1:{port}"
    sent: dict[str, float] = {}
    try:
        wait_for_health(url, process)
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
            names = [f"n{i}" for i in range(5)]
            for name in names:
                assert client.put(f"/v1/nodes/{name}", json=node_doc(name)).status_code == 201
            for i in range(40):
                name = names[i % len(names)]
                ratio = round(0.01 * i, 2)
                report = {"healthy": True, "thermal": {"throttleRatio": ratio}}
                answer = client.post(f"/v1/nodes/{name}/telemetry", json=report)
                assert answer.status_code == 200
                sent[name] = ratio
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    store = Store(create_store_engine(database_url))
    try:
        kept = {r.name: r.node.status.thermal.throttle_ratio for r in store.nodes()}  # type: ignore[union-attr]
    finally:
        store.close()
    assert kept == sent
