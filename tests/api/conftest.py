"""Fixtures of the API tests: databases (an SQLite file, and PostgreSQL when a URL is given),
a settable clock, an app with a known admin token, and builders for small grids.

PostgreSQL comes from ``GRIDPLACE_TEST_POSTGRES_URL`` (``.ci/run`` starts a throwaway cluster and
exports it). Each test gets its own schema there, dropped afterwards. Without the URL the
PostgreSQL cases are skipped — except in CI (``CI=true``), where they fail: a CI run that silently
tested one backend would claim what it did not check.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridplace.api.app import create_app
from gridplace.api.settings import Settings
from gridplace.api.store.engine import scratch_schema

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; httpx is what this project depends on.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

POSTGRES_ENV = "GRIDPLACE_TEST_POSTGRES_URL"
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BACKENDS = ["sqlite", "postgresql"]


def postgres_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{POSTGRES_ENV} is not set in CI: .ci/run must start PostgreSQL")
    return None


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gridplace.db'}"
        return
    base = postgres_url()
    if base is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (CI sets it)")
    with scratch_schema(base, "t") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gridplace.db'}"


class FakeClock:
    """A clock tests move by hand (aware UTC)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "replan_interval_s": 0,  # tests run the check themselves
        "heartbeat_grace_s": 60,
        "plan_time_limit_s": 5,
        "token_cache_s": 60,
        "solve_in_subprocess": False,  # one test covers the worker process (test_serve.py)
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # not a test despite its name

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(sqlite_url: str, clock: FakeClock) -> Iterator[MakeClient]:
    """``make_client(**settings)``: a started TestClient on this test's SQLite file."""
    clients: list[TestClient] = []

    def make(database_url: str = sqlite_url, **overrides: Any) -> TestClient:
        app = create_app(test_settings(database_url, **overrides), clock=clock)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


# ------------------------------------------------------------------------------------ documents


def node_doc(
    name: str,
    gpu: str = "rtx-4090",
    count: int = 1,
    region: str = "eu-west",
    provider: str | None = None,
    price: float = 0.5,
    claims: str = "self-reported",
    throttle: float | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "gridplace/v1alpha1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {
            "region": region,
            "provider": provider or f"p-{name}",
            "pricePerHour": price,
            "gpus": [{"model": gpu, "count": count}],
            "claims": claims,
        },
    }
    if throttle is not None:
        doc["status"] = {"healthy": True, "thermal": {"throttleRatio": throttle}}
    return doc


def workload_doc(
    name: str,
    model: str = "llama-3.1-8b",
    rps: float = 2.0,
    replicas: tuple[int, int] = (1, 8),
    precisions: tuple[str, ...] = ("fp8", "int4"),
    ttft_ms: float = 2000,
    itl_ms: float = 100,
) -> dict[str, Any]:
    return {
        "apiVersion": "gridplace/v1alpha1",
        "kind": "InferenceWorkload",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "precisions": list(precisions),
            "slo": {"ttftMs": ttft_ms, "itlMs": itl_ms},
            "traffic": {
                "requestsPerSecond": rps,
                "promptTokens": 500,
                "outputTokens": 200,
                "sources": [{"region": "eu-west", "share": 1.0}],
            },
            "replicas": {"min": replicas[0], "max": replicas[1]},
        },
    }


def to_yaml(*documents: dict[str, Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def register(client: TestClient, doc: dict[str, Any], headers: dict[str, str] = ADMIN) -> Any:
    name = doc["metadata"]["name"]
    response = client.put(f"/v1/nodes/{name}", content=to_yaml(doc), headers=headers | _yaml_type())
    assert response.status_code in (200, 201), response.text
    return response.json()


def _yaml_type() -> dict[str, str]:
    return {"Content-Type": "application/yaml"}


def submit(client: TestClient, *documents: dict[str, Any], **params: Any) -> Any:
    response = client.post(
        "/v1/plans", content=to_yaml(*documents), headers=ADMIN | _yaml_type(), params=params
    )
    assert response.status_code == 200, response.text
    return response.json()


def node_token(client: TestClient, node: str) -> dict[str, str]:
    response = client.post(f"/v1/admin/nodes/{node}/tokens", headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def small_grid(client: TestClient) -> list[str]:
    """Four single-GPU nodes of four providers in eu-west; returns their names."""
    names = ["ams-4090-a", "ams-4090-b", "fra-l40s-a", "lis-3090-a"]
    gpus = ["rtx-4090", "rtx-4090", "l40s", "rtx-3090"]
    for name, gpu in zip(names, gpus, strict=True):
        register(client, node_doc(name, gpu=gpu))
    return names
