"""``gridplace agent``: run the node agent (``gridplace.executor``) until SIGINT/SIGTERM.

Logs go to stderr. The inference servers it started keep running when it stops; a restarted
agent adopts them from its state file. Exit codes: 0 after a clean stop, 1 a bad option, model
manifest, state file or GPU backend (a message, no traceback), 2 usage (typer).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gridplace.api import render
from gridplace.executor import (
    Agent,
    AgentConfig,
    ApiClient,
    CommandDriver,
    DriverKind,
    ExecutorError,
    Launcher,
    LlamaCppDriver,
    Prewarmer,
    ProcessRuntime,
    ReconcileConfig,
    Reconciler,
    StateFile,
    VllmDriver,
    WeightCache,
    gpu_ids_of,
    load_manifest,
)
from gridplace.executor.drivers import Driver
from gridplace.executor.observe import DEFAULT_WINDOW_S, Observer
from gridplace.executor.standby import StandbyKeeper
from gridplace.hal import BackendKind, HALError, NodeOptions, open_backend

EXIT_INVALID = 1
BYTES_PER_GIB = 2**30


def command(
    api: Annotated[str, typer.Option("--api", help="Base URL of the API, e.g. http://h:8700.")],
    node: Annotated[str, typer.Option("--node", help="This node's name (as registered).")],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=["GRIDPLACE_TOKEN", "GRIDPLACE_NODE_TOKEN"],
            show_envvar=True,
            help="The node token (gpn.…). Prefer the environment variable or --token-file: "
            "a --token flag is visible to every user in `ps`.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File holding the node token (one line)."),
    ] = None,
    backend: Annotated[
        BackendKind, typer.Option("--backend", help="auto, nvml, amdsmi or fake.")
    ] = BackendKind.AUTO,
    fake_fleet: Annotated[
        Path | None, typer.Option("--fake-fleet", help="Fleet YAML for the fake backend.")
    ] = None,
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Weights cache directory.")] = Path(
        "gridplace-cache"
    ),
    cache_max_gib: Annotated[
        float, typer.Option("--cache-max-gib", min=0.001, help="Cache size limit, GiB.")
    ] = 200.0,
    state_file: Annotated[
        Path, typer.Option("--state-file", help="SQLite file of what this agent started.")
    ] = Path("gridplace-agent.db"),
    interval_s: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between loops.")
    ] = 5.0,
    driver: Annotated[
        DriverKind,
        typer.Option("--driver", help="vllm, llama.cpp or command (the manifest may override)."),
    ] = DriverKind.VLLM,
    command_template: Annotated[
        str | None,
        typer.Option(
            "--command-template",
            help="For --driver command: e.g. 'my-server --port {port} --model {model}'.",
        ),
    ] = None,
    drain_path: Annotated[
        str | None,
        typer.Option("--drain-path", help="For --driver command: POSTed to stop new requests."),
    ] = None,
    models: Annotated[
        Path | None, typer.Option("--models", help="Model manifest YAML (per workload).")
    ] = None,
    region: Annotated[str | None, typer.Option("--region")] = None,
    provider: Annotated[str | None, typer.Option("--provider")] = None,
    price_per_hour: Annotated[float | None, typer.Option("--price-per-hour", min=0)] = None,
    listen_host: Annotated[
        str, typer.Option("--listen-host", help="Address the servers listen on.")
    ] = "127.0.0.1",
    advertise_host: Annotated[
        str | None,
        typer.Option("--advertise-host", help="Host reported in endpoints (default: listen)."),
    ] = None,
    start_deadline_s: Annotated[float, typer.Option("--start-deadline", min=0.1)] = 600.0,
    drain_grace_s: Annotated[float, typer.Option("--drain-grace", min=0)] = 30.0,
    handover_s: Annotated[
        float,
        typer.Option("--handover", min=0, help="Seconds a workload leaving the node still runs."),
    ] = 30.0,
    backoff_s: Annotated[
        float, typer.Option("--backoff", min=0.01, help="First retry delay of a failed start.")
    ] = 5.0,
    log_dir: Annotated[Path, typer.Option("--log-dir", help="Server logs.")] = Path(
        "gridplace-agent-logs"
    ),
    observe_window_s: Annotated[
        float,
        typer.Option(
            "--observe-window", min=1, help="Seconds per engine observation window posted."
        ),
    ] = DEFAULT_WINDOW_S,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the node agent: register, heartbeat, and run what the plan assigns to this node."""
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    if backend is BackendKind.FAKE and fake_fleet is None:
        raise typer.BadParameter("--backend fake needs --fake-fleet FILE", param_hint="--backend")
    if driver is DriverKind.COMMAND and not command_template:
        raise typer.BadParameter("--driver command needs --command-template", param_hint="--driver")
    token = _node_token(token, token_file)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        drivers: dict[DriverKind, Driver] = {
            DriverKind.VLLM: VllmDriver(),
            DriverKind.LLAMA_CPP: LlamaCppDriver(),
        }
        if command_template:
            drivers[DriverKind.COMMAND] = CommandDriver(command_template, drain_path=drain_path)
        manifest = load_manifest(models)
        state = StateFile(state_file)
        gpus = open_backend(backend, fake_fleet)
    except ExecutorError as error:
        _fail(error.message)
    except HALError as error:
        _fail(error.message)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with gpus:
            gpu_ids, vendor = gpu_ids_of(gpus)
            cache = WeightCache(cache_dir, int(cache_max_gib * BYTES_PER_GIB))
            prewarmer = Prewarmer(cache)
            for source in manifest.warm_standby():
                prewarmer.request(source, ())
            config = ReconcileConfig(
                start_deadline_s=start_deadline_s,
                drain_grace_s=drain_grace_s,
                handover_s=handover_s,
                backoff_initial_s=backoff_s,
                listen_host=listen_host,
                advertise_host=advertise_host or listen_host,
                log_dir=log_dir,
            )
            launcher = Launcher(manifest, drivers, driver, gpu_ids, vendor)
            reconciler = Reconciler(state, ProcessRuntime(), launcher, config, prewarmer)
            client = ApiClient(api, node, token)
            options = NodeOptions(region=region, provider=provider, price_per_hour=price_per_hour)
            observer = Observer(node, manifest, driver, observe_window_s)
            agent = Agent(
                AgentConfig(node, interval_s, options), client, gpus, reconciler,
                observer=observer, standbys=StandbyKeeper(manifest.weights_for, prewarmer),
            )  # fmt: skip
            agent.run(stop)
            observer.close()
            prewarmer.close()
            client.close()
    except HALError as error:
        _fail(error.message)
    finally:
        state.close()
    render.stderr.print("agent stopped; its servers keep running", highlight=False)


MAX_TOKEN_FILE_BYTES = 4096


def _node_token(token: str | None, token_file: Path | None) -> str:
    """The token from --token-file, else --token / GRIDPLACE_TOKEN; exit 1 without one."""
    if token_file is not None:
        try:
            with token_file.open("rb") as handle:
                raw = handle.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as error:
            _fail(f"cannot read --token-file {token_file}: {error.strerror}")
        text = raw.decode("utf-8", errors="replace").strip()
        if len(raw) > MAX_TOKEN_FILE_BYTES or not text or "\n" in text:
            _fail(f"--token-file {token_file} must hold the node token alone on one line")
        return text
    if not token:
        _fail(
            "no node token: set GRIDPLACE_TOKEN or give --token-file FILE "
            "(--token also works, but shows in `ps`)"
        )
    return token


def _fail(message: str) -> NoReturn:
    render.stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(EXIT_INVALID)
