"""``gridplace serve``: run the HTTP API (uvicorn) on an SQLite file or a PostgreSQL database.

With no configuration at all it serves on 127.0.0.1:8700 with ``gridplace.db`` in the working
directory and prints a generated admin token once. ``--workers N`` runs N processes over one
PostgreSQL (what they share goes through it: ``shared.py``, ``Store.take_shared_token``); SQLite
is served by one process and says so. Every other knob is a ``GRIDPLACE_*``
environment variable (``gridplace.api.settings``). Exit codes: 0 after a clean shutdown, 1 when
the settings or the database are unusable (a message, no traceback).
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from gridplace.api import render

if TYPE_CHECKING:  # the app and its settings are imported when the command runs
    from fastapi import FastAPI

    from gridplace.api.settings import Settings

EXIT_INVALID = 1
# How long uvicorn waits for a worker's answer to its health ping (its default, 5 s, is shorter
# than a worker's start on a loaded machine); also how long a hung worker goes unnoticed.
WORKER_STARTUP_S = 60
DEFAULT_PORT = 8700
# How long an idle connection is kept open. uvicorn's default, 5 s, is the agents' own interval
# (``AgentConfig.interval_s``): each heartbeat then met a connection the server was closing at
# that moment ("server disconnected" in bench/api_load.py), or paid a new one. Longer than a
# load balancer's usual idle timeout (60 s), so that the balancer, not the server, closes first.
KEEP_ALIVE_S = 75


HostOption = Annotated[
    str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///FILE (default sqlite:///gridplace.db) or "
        "postgresql+psycopg://USER:PASSWORD@HOST/DB; also GRIDPLACE_DATABASE_URL.",
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        max=64,
        help="Server processes, all on one PostgreSQL (SQLite: 1, its single writer).",
    ),
]
LogLevelOption = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def command(
    host: HostOption = "127.0.0.1",
    port: PortOption = DEFAULT_PORT,
    database_url: DatabaseUrlOption = None,
    workers: WorkersOption = 1,
    log_level: LogLevelOption = "info",
) -> None:
    """Serve plans over HTTP: planners submit workloads, node agents report and pull."""
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        render.stderr.print(f"[bold red]error:[/] unknown log level {log_level!r}")
        raise typer.Exit(EXIT_INVALID)
    logging.basicConfig(level=level, format="%(levelname)s:     %(name)s: %(message)s")
    settings, app = _create_app(database_url)
    backend = app.state.gridplace.store.backend
    if workers > 1 and backend != "postgresql":
        app.state.gridplace.store.close()
        render.stderr.print(
            f"[bold red]error:[/] --workers {workers}: an SQLite database is served by one "
            "process (it has a single writer); several processes need PostgreSQL "
            "(--database-url postgresql+psycopg://...)",
            highlight=False,
        )
        raise typer.Exit(EXIT_INVALID)
    render.stderr.print(
        f"gridplace API on http://{host}:{port} (database: {backend}, {workers} "
        f"process{'es' * (workers > 1)}); OpenAPI at /docs",
        highlight=False,
    )
    _serve(app, settings.database_url, host, port, workers, log_level.lower())


def _serve(
    app: FastAPI, database_url: str, host: str, port: int, workers: int, log_level: str
) -> None:
    """Serve ``app`` in this process, or ``workers`` processes that each build their own."""
    import uvicorn

    options: dict[str, Any] = {
        "log_level": log_level,
        "access_log": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }
    if workers == 1:
        uvicorn.run(app, host=host, port=port, **options)
        return
    # The app built here migrated the database and settled the admin token; each worker process
    # builds its own from the same settings, passed down through the environment.
    app.state.gridplace.store.close()
    os.environ["GRIDPLACE_DATABASE_URL"] = database_url
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # uvicorn kills a worker that does not answer its ping within 5 s, and a worker builds
        # the whole app (imports, migrations check, solver pool) before it answers: on a loaded
        # machine that takes longer, and the workers were killed and restarted without end.
        options["timeout_worker_healthcheck"] = WORKER_STARTUP_S
    uvicorn.run(
        "gridplace.api.app:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        **options,
    )


def _create_app(database_url: str | None) -> tuple[Settings, FastAPI]:
    """The settings (environment, then ``--database-url``) and the app; exit 1 if either fails."""
    from gridplace.api.app import create_app
    from gridplace.api.settings import Settings
    from gridplace.api.store import StoreError

    try:
        settings = Settings() if database_url is None else Settings(database_url=database_url)
        return settings, create_app(settings)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            field = ".".join(str(part) for part in item["loc"])
            render.stderr.print(
                f"[bold red]error:[/] setting {field} (GRIDPLACE_{field.upper()}): "
                + escape(item["msg"]),
                highlight=False,
            )
        raise typer.Exit(EXIT_INVALID) from None
    except StoreError as error:
        render.stderr.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
