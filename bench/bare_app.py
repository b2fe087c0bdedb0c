"""The baseline of ``api_wrk.py``: a bare FastAPI app doing the least the two hot routes must do.

``POST /v1/nodes/{name}/telemetry`` inserts the body into an SQLite file (WAL) and answers a
small JSON; ``GET /v1/nodes/{name}/assignments`` answers a small JSON. No auth, no validation
beyond FastAPI's JSON parsing. Served by uvicorn like gridplace; the file is ``BARE_DB``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Any

from fastapi import FastAPI, Request

app = FastAPI()
_local = threading.local()


def _db() -> sqlite3.Connection:
    connection: sqlite3.Connection | None = getattr(_local, "db", None)
    if connection is None:
        connection = sqlite3.connect(os.environ["BARE_DB"], timeout=10, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE IF NOT EXISTS beats (node TEXT, body TEXT)")
        _local.db = connection
    return connection


@app.post("/v1/nodes/{name}/telemetry")
async def telemetry(name: str, request: Request) -> dict[str, Any]:
    body = await request.json()
    _db().execute("INSERT INTO beats VALUES (?, ?)", (name, json.dumps(body)))
    return {"name": name, "healthy": True}


@app.get("/v1/nodes/{name}/assignments")
def assignments(name: str) -> dict[str, Any]:
    return {"node": name, "generation": 1, "assignments": []}
