"""Issue 14, item 7: integers the store cannot hold, and an SQLite file deleted, replaced or
damaged under the server (or before it starts)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gridplace.api.store import DatabaseDamaged, Store
from gridplace.specs import Node
from tests.api.conftest import ADMIN, MakeClient, node_doc, node_token, register
from tests.api.test_serve import clean_environment

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PAGE_BYTES = 4096  # SQLite's default page size


@pytest.mark.parametrize("generation", [2**31, 2**63, 2**64], ids=["2^31", "2^63", "2^64"])
def test_an_observed_generation_past_the_column_is_422(
    make_client: MakeClient, database_url: str, generation: int
) -> None:
    client = make_client(database_url)
    register(client, node_doc("a"))
    report = {"observedGeneration": generation, "replicas": []}
    response = client.put("/v1/nodes/a/state", json=report, headers=node_token(client, "a"))
    assert response.status_code == 422, response.text
    assert response.json()["issues"][0]["field"] == "observedGeneration"


def sqlite_files(database: Path) -> list[Path]:
    return [
        database,
        database.with_name(database.name + "-wal"),
        database.with_name(database.name + "-shm"),
    ]


def test_a_deleted_sqlite_file_is_noticed_and_writes_are_refused(
    make_client: MakeClient, tmp_path: Path
) -> None:
    database = tmp_path / "gridplace.db"
    client: TestClient = make_client(f"sqlite:///{database}")
    register(client, node_doc("a"))
    for path in sqlite_files(database):
        path.unlink(missing_ok=True)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert "deleted" in health.json()["message"] and str(database) in health.json()["message"]
    write = client.put("/v1/nodes/b", json=node_doc("b"), headers=ADMIN)
    assert write.status_code == 503 and "a write would be lost" in write.json()["message"]


def damage(database: Path, first_page: int) -> None:
    """Overwrite every page from ``first_page`` (0: the header) with garbage."""
    size = database.stat().st_size
    with database.open("r+b") as handle:
        handle.seek(first_page * PAGE_BYTES)
        handle.write(b"\xde\xad\xbe\xef" * ((size - first_page * PAGE_BYTES) // 4))


def filled_store(database: Path) -> None:
    store = Store.open(f"sqlite:///{database}")
    for index in range(50):
        store.upsert_node(Node.model_validate(node_doc(f"n{index}")), T0)
    store.close()  # checkpoints the WAL into the file


def test_a_damaged_file_is_refused_at_open_with_what_to_do(tmp_path: Path) -> None:
    database = tmp_path / "gridplace.db"
    filled_store(database)
    damage(database, first_page=2)
    with pytest.raises(DatabaseDamaged, match=r"damaged.*restore it from a backup"):
        Store.open(f"sqlite:///{database}")


def test_damage_found_while_serving_is_a_503_and_healthz_says_so(tmp_path: Path) -> None:
    database = tmp_path / "gridplace.db"
    filled_store(database)
    store = Store.open(f"sqlite:///{database}")
    damage(database, first_page=2)
    store.engine.dispose()  # fresh connections, as after a restart of the pool
    with pytest.raises(DatabaseDamaged):
        store.nodes()
    with pytest.raises(DatabaseDamaged, match="damaged"):
        store.ping()
    with pytest.raises(DatabaseDamaged):
        store.upsert_node(Node.model_validate(node_doc("late")), T0)


@pytest.mark.parametrize("first_page", [0, 2], ids=["header", "tables"])
def test_serve_on_a_damaged_file_exits_1_with_a_message(tmp_path: Path, first_page: int) -> None:
    database = tmp_path / "gridplace.db"
    filled_store(database)
    damage(database, first_page)
    env = clean_environment() | {"GRIDPLACE_DATABASE_URL": f"sqlite:///{database}"}
    result = subprocess.run(
        [sys.executable, "-m", "gridplace.api.cli", "serve", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(database) in result.stderr and "damaged" in result.stderr
    assert os.path.exists(database)
