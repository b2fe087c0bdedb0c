"""The store on both backends: migrations (fresh, and from the first revision with data in it),
nodes and silence counts, tokens, probes retention, plan generations and their conflicts, states.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gridplace.api.security import Role, hash_secret
from gridplace.api.store import (
    GenerationConflict,
    NewPlan,
    NodeBasis,
    Store,
    UnsupportedDatabase,
    create_store_engine,
    migrate,
)
from gridplace.api.store import store as store_module
from gridplace.api.store.engine import current_revision, parse_url
from gridplace.api.store.schema import Base
from gridplace.specs import LatencyProbes, Node, NodeStatus, PlacementPlan, ThermalStatus
from tests.api.conftest import node_doc

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def node(name: str, **kwargs: Any) -> Node:
    return Node.model_validate(node_doc(name, **kwargs))


def plan(generation: int, nodes: list[str]) -> PlacementPlan:
    return PlacementPlan.model_validate(
        {
            "metadata": {"name": f"plan-{generation}", "generation": generation},
            "spec": {
                "assignments": [
                    {"workload": "chat", "node": n, "gpus": [0], "precision": "fp8"} for n in nodes
                ]
            },
        }
    )


def new_plan(generation: int, nodes: list[str], base: int | None = None) -> NewPlan:
    return NewPlan(
        plan=plan(generation, nodes),
        base_generation=generation - 1 if base is None else base,
        trigger="submitted",
        reasons=[],
        inputs=[{"kind": "InferenceWorkload"}],
        options={"strategy": "cpsat"},
        basis={n: NodeBasis(healthy=True, throttle_ratio=0.1) for n in nodes},
        explanation=[],
        compile_s=0.1,
        solve_s=0.2,
    )


@pytest.fixture
def store(database_url: str) -> Any:
    opened = Store.open(database_url)
    yield opened
    opened.close()


def test_a_fresh_database_is_migrated_to_the_shape_of_the_models(database_url: str) -> None:
    engine = create_store_engine(database_url)
    migrate(engine)
    assert current_revision(engine) == "0007"
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_upgrading_from_the_first_revision_keeps_nodes_and_plans(database_url: str) -> None:
    engine = create_store_engine(database_url)
    migrate(engine, "0001")
    document = node("old-node").to_yaml_dict()
    status = {"healthy": True, "thermal": {"throttleRatio": 0.25, "windowHours": 24}}
    with engine.begin() as connection:
        tables = sa.MetaData()
        tables.reflect(connection, only=["nodes", "plans", "node_tokens"])
        secret = hash_secret("old")
        connection.execute(
            tables.tables["node_tokens"].insert(),
            {"token_id": "00aa", "node": "old-node", "salt": secret.salt_hex,
             "hash": secret.hash_hex, "created_at": T0},
        )  # fmt: skip
        connection.execute(
            tables.tables["nodes"].insert(),
            {
                "name": "old-node",
                "document": document,
                "status": status,
                "healthy": True,
                "last_heartbeat": T0,
                "created_at": T0,
                "updated_at": T0,
            },
        )
        connection.execute(
            tables.tables["plans"].insert(),
            {
                "generation": 1,
                "name": "plan-1",
                "created_at": T0,
                "trigger": "submitted",
                "reasons": [],
                "document": plan(1, ["old-node"]).to_yaml_dict(),
                "inputs": [],
                "options": {},
                "basis": {},
                "explanation": [],
                "replicas": 1,
                "unplaced": 0,
                "compile_s": 0.0,
                "solve_s": 0.0,
            },
        )
    engine.dispose()

    store = Store.open(database_url)  # upgrades to the head
    try:
        assert current_revision(store.engine) == "0007"
        record = store.node("old-node")
        assert record is not None and record.last_heartbeat == T0
        assert record.node.throttle_ratio == 0.25
        with store.engine.connect() as connection:  # the new column was filled from the JSON
            ratio = connection.execute(sa.text("SELECT throttle_ratio FROM nodes")).scalar_one()
        assert ratio == 0.25
        latest = store.latest_plan()
        assert latest is not None and latest.plan.spec.assignments[0].node == "old-node"
        assert store.add_plan(new_plan(2, ["old-node"]), T0).generation == 2
        token = store.node_token("00aa")  # tokens from before roles are node tokens
        assert token is not None and token.role is Role.NODE and token.node == "old-node"
    finally:
        store.close()


def test_nodes_upsert_status_and_quiet_counts(store: Store) -> None:
    record, created = store.upsert_node(node("a"), T0)
    assert created and record.last_heartbeat is None and record.created_at == T0
    _, created = store.upsert_node(node("b", throttle=0.3), T0)  # a status counts as a report
    assert created
    b = store.node("b")
    assert b is not None and b.last_heartbeat == T0 and b.node.throttle_ratio == 0.3
    record, created = store.upsert_node(node("a", price=0.9), T0 + timedelta(seconds=5))
    assert not created and record.node.spec.price_per_hour == 0.9

    later = T0 + timedelta(seconds=100)
    status = NodeStatus(healthy=False, thermal=ThermalStatus(throttle_ratio=0.5))
    reported = store.report_status("a", status, later)
    assert reported is not None and reported.last_heartbeat == later
    assert reported.node.status is not None and reported.node.status.last_heartbeat == later
    assert not reported.node.healthy
    assert store.report_status("missing", status, later) is None
    # a heard at T0+100, b at T0: only b is quiet since T0+50.
    assert store.quiet_count(T0 + timedelta(seconds=50)) == (1, 2)
    assert [r.name for r in store.nodes()] == ["a", "b"]
    assert [r.name for r in store.nodes(limit=1, offset=1)] == ["b"]
    assert store.delete_node("a") and not store.delete_node("a")
    assert store.node_count() == 1


def test_nodes_by_page_and_by_name(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"n{i:02d}" for i in range(12)]
    store.upsert_nodes([node(name) for name in reversed(names)], T0)
    assert [r.name for r in store.nodes(limit=3, after="n04")] == ["n05", "n06", "n07"]
    assert [r.name for r in store.nodes(limit=2, offset=1, after="n09")] == ["n11"]
    assert store.nodes(after="n11") == []
    monkeypatch.setattr(store_module, "NAMES_PER_QUERY", 5)  # several IN lists
    wanted = {*names[::2], "missing", "n99"}
    assert [r.name for r in store.nodes_named(wanted)] == names[::2]
    assert store.nodes_named([]) == []


def test_tokens_keep_only_a_hash_and_can_be_revoked(store: Store) -> None:
    store.add_node_token("00112233aabbccdd", "a", hash_secret("s3cret-value"), T0)
    record = store.node_token("00112233aabbccdd")
    assert record is not None and record.node == "a" and record.revoked_at is None
    assert record.hash.matches("s3cret-value") and not record.hash.matches("other")
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM node_tokens")).all()
    assert "s3cret-value" not in repr(rows)
    revoked = store.revoke_node_token("00112233aabbccdd", T0)
    assert revoked is not None and revoked.revoked_at == T0
    assert store.revoke_node_token("ffffffffffffffff", T0) is None
    assert [t.token_id for t in store.node_tokens("a")] == ["00112233aabbccdd"]
    assert store.node_tokens("b") == []
    store.add_node_token("ffeeddccbbaa0011", "ci", hash_secret("v"), T0, Role.VIEWER)
    viewer = store.node_token("ffeeddccbbaa0011")
    assert viewer is not None and viewer.role is Role.VIEWER and viewer.node == "ci"


def test_admin_hash_is_stored_once(store: Store) -> None:
    first = hash_secret("one")
    assert store.ensure_admin_token_hash(first, T0) == first
    assert store.ensure_admin_token_hash(hash_secret("two"), T0) == first
    assert store.admin_token_hash() == first


def probes(name: str, source: str = "a") -> LatencyProbes:
    return LatencyProbes.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"samples": [{"source": source, "target": "b", "rttMs": [10.0, 11.0]}]},
        }
    )


def test_probes_replace_by_name_and_keep_the_newest(store: Store) -> None:
    for index in range(5):
        store.add_probes("a", probes(f"p{index}"), T0 + timedelta(seconds=index), keep=3)
    assert store.add_probes("a", probes("p4"), T0 + timedelta(seconds=9), keep=3) == 3
    store.add_probes("admin", probes("campaign", source="region/eu-west"), T0, keep=3)
    names = sorted(p.metadata.name for p in store.probes())
    assert names == ["campaign", "p2", "p3", "p4"]


def test_plans_are_generations_and_a_stale_base_conflicts(store: Store) -> None:
    assert store.latest_generation() == 0 and store.latest_plan() is None
    assert store.assignments_for("a").generation is None
    store.add_plan(new_plan(1, ["a", "b", "a"]), T0)
    store.add_plan(new_plan(2, ["b"]), T0)
    with pytest.raises(GenerationConflict) as caught:
        store.add_plan(new_plan(2, ["a"], base=1), T0)
    assert caught.value.current == 2 and caught.value.expected == 1
    assert store.latest_generation() == 2
    assert [s.generation for s in store.plans(10)] == [2, 1]
    assert [s.generation for s in store.plans(10, before=2)] == [1]
    first = store.plan(1)
    assert first is not None and first.summary.replicas == 3
    assert first.basis["a"] == NodeBasis(healthy=True, throttle_ratio=0.1)
    mine = store.assignments_for("b")  # the latest plan only
    assert mine.generation == 2 and [a["node"] for a in mine.assignments] == ["b"]
    assert store.assignments_for("a").assignments == []


def test_concurrent_writers_of_the_same_generation_one_wins(store: Store) -> None:
    store.add_plan(new_plan(1, ["a"]), T0)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def write(index: int) -> None:
        barrier.wait()
        try:
            store.add_plan(new_plan(2, [f"n{index}"]), T0)
            outcomes.append("stored")
        except GenerationConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "stored"]
    assert store.latest_generation() == 2


def test_agent_state_is_replaced(store: Store) -> None:
    store.put_state("a", 1, {"replicas": []}, T0)
    record = store.put_state("a", 2, {"replicas": [{"workload": "x"}]}, T0 + timedelta(seconds=1))
    assert record.observed_generation == 2
    again = store.state("a")
    assert again is not None and again.report["replicas"][0]["workload"] == "x"
    assert store.state("b") is None


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+asyncpg://u@h/db",
        "nonsense",
    ],
)
def test_unsupported_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(UnsupportedDatabase):
        create_store_engine(url)


def test_a_postgresql_url_without_a_driver_gets_psycopg() -> None:
    assert parse_url("postgresql://u@h/db").get_driver_name() == "psycopg"


def test_sqlite_runs_in_wal_mode_and_writes_begin_immediate(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        store.upsert_node(node("a"), T0)
        store.node("a")
    finally:
        store.close()
    assert "BEGIN IMMEDIATE" in statements
    assert statements.count("BEGIN") >= 1  # reads do not take the write lock
