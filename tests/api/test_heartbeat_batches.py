"""Heartbeats answered 204 are held in memory and written in batches (``store/heartbeats.py``)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from gridplace.api.store import Store
from gridplace.api.store import store as store_module
from gridplace.api.store.heartbeats import HeartbeatBuffer
from gridplace.specs import Node, NodeStatus, ThermalStatus
from tests.api.conftest import FakeClock, node_doc


def _status(ratio: float) -> NodeStatus:
    return NodeStatus(healthy=True, thermal=ThermalStatus(throttle_ratio=ratio))


def _ratio(store: Store, name: str) -> float | None:
    record = store.node(name)
    assert record is not None
    status = record.node.status
    return status.thermal.throttle_ratio if status and status.thermal else None


@pytest.fixture
def stores(database_url: str) -> Any:
    """Two stores on one database (two servers); the first buffers heartbeats for a minute."""
    one, two = Store.open(database_url), Store.open(database_url)
    one.buffer_heartbeats(60)
    yield one, two
    one.close()
    two.close()


def test_buffered_heartbeats_wait_for_a_flush_and_this_server_reads_its_own(
    stores: tuple[Store, Store], clock: FakeClock
) -> None:
    one, two = stores
    one.upsert_node(Node.model_validate(node_doc("a")), clock())
    two.upsert_node(Node.model_validate(node_doc("b")), clock())  # registered by another server
    assert one.buffer_known_heartbeat("a", _status(0.3), clock())  # registered here: known
    assert not one.buffer_known_heartbeat("b", _status(0.3), clock())  # never looked up yet
    assert one.record_heartbeat("b", _status(0.25), clock())  # looked up once
    assert one.buffer_known_heartbeat("b", _status(0.3), clock())  # known now: no lookup
    assert _ratio(two, "a") is None  # not written yet: the other server sees nothing
    assert _ratio(one, "a") == 0.3  # a read of this server writes what it holds first
    assert _ratio(two, "a") == 0.3


def test_a_starting_server_knows_every_registered_node_without_a_lookup(
    database_url: str, clock: FakeClock
) -> None:
    """Each node's first heartbeat after a (re)start is answered from memory too."""
    registered = Store.open(database_url)
    registered.upsert_node(Node.model_validate(node_doc("a")), clock())
    starting = Store.open(database_url)
    try:
        starting.buffer_heartbeats(60)
        assert starting.buffer_known_heartbeat("a", _status(0.1), clock())
        assert not starting.buffer_known_heartbeat("b", _status(0.1), clock())  # not registered
        assert starting.upsert_node(Node.model_validate(node_doc("b")), clock())[1]
        assert starting.buffer_known_heartbeat("b", _status(0.1), clock())  # registered here
    finally:
        starting.close()
        registered.close()


def test_nodes_another_server_registered_are_learned_together(
    stores: tuple[Store, Store], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their first heartbeats come by the thousand: one miss reads every name, not each one."""
    monkeypatch.setattr(store_module, "NAMES_REREAD_S", 0.0)  # the fixture has just read them
    one, two = stores
    two.upsert_nodes([Node.model_validate(node_doc(name)) for name in ("a", "b", "c")], clock())
    assert one.record_heartbeat("a", _status(0.1), clock())
    assert one.buffer_known_heartbeat("b", _status(0.1), clock())
    assert one.buffer_known_heartbeat("c", _status(0.1), clock())


def test_a_heartbeat_of_a_node_deleted_by_another_server_is_refused_after_a_flush(
    stores: tuple[Store, Store], clock: FakeClock
) -> None:
    one, two = stores
    one.upsert_node(Node.model_validate(node_doc("a")), clock())
    assert not one.record_heartbeat("missing", _status(0.1), clock())
    assert one.record_heartbeat("a", _status(0.1), clock())
    assert two.delete_node("a")
    assert one.record_heartbeat("a", _status(0.2), clock())  # still known here
    one.flush_heartbeats()  # writes nothing for "a", and learns that it is gone
    assert not one.record_heartbeat("a", _status(0.3), clock())


def test_a_buffered_heartbeat_never_overwrites_a_newer_one(
    stores: tuple[Store, Store], clock: FakeClock
) -> None:
    one, two = stores
    one.upsert_node(Node.model_validate(node_doc("a")), clock())
    assert one.record_heartbeat("a", _status(0.1), clock())
    assert two.report_status("a", _status(0.4), clock() + timedelta(seconds=5)) is not None
    one.flush_heartbeats()
    assert _ratio(two, "a") == 0.4


def test_a_failed_batch_is_kept_and_newer_heartbeats_win() -> None:
    written: list[list[dict[str, Any]]] = []
    failures = [RuntimeError("database away")]

    def write(batch: list[dict[str, Any]]) -> None:
        if failures:
            raise failures.pop()
        written.append(batch)

    buffer = HeartbeatBuffer(write, interval_s=60)
    buffer.add("a", {"v": 1})
    buffer.add("b", {"v": 1})
    with pytest.raises(RuntimeError):
        buffer.flush()
    buffer.add("a", {"v": 2})
    buffer.close()  # writes what is left
    assert written == [[{"node_name": "a", "v": 2}, {"node_name": "b", "v": 1}]]


def test_two_servers_batches_of_the_same_nodes_never_deadlock(
    database_url: str, clock: FakeClock
) -> None:
    """Heartbeats arrive at each server in its own order; batches written in that order locked
    the same rows in opposite orders, and PostgreSQL aborted one as a deadlock."""
    names = [f"n{i:04d}" for i in range(1500)]
    stores = [Store.open(database_url), Store.open(database_url)]
    stores[0].upsert_nodes([Node.model_validate(node_doc(n)) for n in names], clock())
    failures: list[str] = []

    def serve(store: Store, order: list[str]) -> None:
        store.buffer_heartbeats(60)
        for round_ in range(3):
            for name in order:
                assert store.buffer_known_heartbeat(name, _status(0.1 * round_), clock())
            try:
                store.flush_heartbeats()
            except Exception as error:  # DatabaseUnavailable: deadlock detected
                failures.append(str(error)[:120])

    threads = [
        threading.Thread(target=serve, args=(store, order))
        for store, order in zip(stores, (names, names[::-1]), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for store in stores:
        store.close()
    assert failures == []
