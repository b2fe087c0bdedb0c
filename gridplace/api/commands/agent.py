"""``gridplace agent``: run the node agent (``gridplace.executor``) until SIGINT/SIGTERM.

Logs go to stderr. The inference servers it started keep running when it stops; a restarted
agent adopts them from its state file. Exit codes: 0 after a clean stop, 1 a bad option, model
manifest, state file or GPU backend (a message, no traceback), 2 usage (typer).
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
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
from gridplace.executor.manifest import Manifest
from gridplace.executor.observe import DEFAULT_WINDOW_S, Observer
from gridplace.executor.standby import StandbyKeeper
from gridplace.hal import BackendKind, GPUBackend, HALError, NodeOptions, open_backend

EXIT_INVALID = 1
BYTES_PER_GIB = 2**30


ApiOption = Annotated[str, typer.Option("--api", help="Base URL of the API, e.g. http://h:8700.")]
NodeOption = Annotated[str, typer.Option("--node", help="This node's name (as registered).")]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=["GRIDPLACE_TOKEN", "GRIDPLACE_NODE_TOKEN"],
        show_envvar=True,
        help="The node token (gpn.…). Prefer the environment variable or --token-file: "
        "a --token flag is visible to every user in `ps`.",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", help="File holding the node token (one line)."),
]
BackendOption = Annotated[
    BackendKind, typer.Option("--backend", help="auto, nvml, amdsmi or fake.")
]
FakeFleetOption = Annotated[
    Path | None, typer.Option("--fake-fleet", help="Fleet YAML for the fake backend.")
]
CacheDirOption = Annotated[Path, typer.Option("--cache-dir", help="Weights cache directory.")]
CacheMaxGibOption = Annotated[
    float, typer.Option("--cache-max-gib", min=0.001, help="Cache size limit, GiB.")
]
StateFileOption = Annotated[
    Path, typer.Option("--state-file", help="SQLite file of what this agent started.")
]
IntervalOption = Annotated[
    float, typer.Option("--interval", min=0.05, help="Seconds between loops.")
]
DriverOption = Annotated[
    DriverKind,
    typer.Option("--driver", help="vllm, llama.cpp or command (the manifest may override)."),
]
CommandTemplateOption = Annotated[
    str | None,
    typer.Option(
        "--command-template",
        help="For --driver command: e.g. 'my-server --port {port} --model {model}'.",
    ),
]
DrainPathOption = Annotated[
    str | None,
    typer.Option("--drain-path", help="For --driver command: POSTed to stop new requests."),
]
ModelsOption = Annotated[
    Path | None, typer.Option("--models", help="Model manifest YAML (per workload).")
]
RegionOption = Annotated[str | None, typer.Option("--region")]
ProviderOption = Annotated[str | None, typer.Option("--provider")]
PricePerHourOption = Annotated[float | None, typer.Option("--price-per-hour", min=0)]
ListenHostOption = Annotated[
    str, typer.Option("--listen-host", help="Address the servers listen on.")
]
AdvertiseHostOption = Annotated[
    str | None,
    typer.Option("--advertise-host", help="Host reported in endpoints (default: listen)."),
]
StartDeadlineOption = Annotated[float, typer.Option("--start-deadline", min=0.1)]
DrainGraceOption = Annotated[float, typer.Option("--drain-grace", min=0)]
HandoverOption = Annotated[
    float,
    typer.Option("--handover", min=0, help="Seconds a workload leaving the node still runs."),
]
BackoffOption = Annotated[
    float, typer.Option("--backoff", min=0.01, help="First retry delay of a failed start.")
]
LogDirOption = Annotated[Path, typer.Option("--log-dir", help="Server logs.")]
PipelineWaitOption = Annotated[
    float,
    typer.Option(
        "--pipeline-wait",
        min=1,
        help="Seconds a pipeline's first stage waits for the other stages before it fails.",
    ),
]
ObserveWindowOption = Annotated[
    float,
    typer.Option("--observe-window", min=1, help="Seconds per engine observation window posted."),
]
LogLevelOption = Annotated[str, typer.Option("--log-level")]


def command(
    api: ApiOption,
    node: NodeOption,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    backend: BackendOption = BackendKind.AUTO,
    fake_fleet: FakeFleetOption = None,
    cache_dir: CacheDirOption = Path("gridplace-cache"),
    cache_max_gib: CacheMaxGibOption = 200.0,
    state_file: StateFileOption = Path("gridplace-agent.db"),
    interval_s: IntervalOption = 5.0,
    driver: DriverOption = DriverKind.VLLM,
    command_template: CommandTemplateOption = None,
    drain_path: DrainPathOption = None,
    models: ModelsOption = None,
    region: RegionOption = None,
    provider: ProviderOption = None,
    price_per_hour: PricePerHourOption = None,
    listen_host: ListenHostOption = "127.0.0.1",
    advertise_host: AdvertiseHostOption = None,
    start_deadline_s: StartDeadlineOption = 600.0,
    drain_grace_s: DrainGraceOption = 30.0,
    handover_s: HandoverOption = 30.0,
    backoff_s: BackoffOption = 5.0,
    log_dir: LogDirOption = Path("gridplace-agent-logs"),
    pipeline_wait_s: PipelineWaitOption = 600.0,
    observe_window_s: ObserveWindowOption = DEFAULT_WINDOW_S,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the node agent: register, heartbeat, and run what the plan assigns to this node."""
    level = _log_level(log_level)
    if backend is BackendKind.FAKE and fake_fleet is None:
        raise typer.BadParameter("--backend fake needs --fake-fleet FILE", param_hint="--backend")
    if driver is DriverKind.COMMAND and not command_template:
        raise typer.BadParameter("--driver command needs --command-template", param_hint="--driver")
    token = _node_token(token, token_file)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    reconcile = ReconcileConfig(
        start_deadline_s=start_deadline_s,
        drain_grace_s=drain_grace_s,
        handover_s=handover_s,
        backoff_initial_s=backoff_s,
        listen_host=listen_host,
        advertise_host=advertise_host or listen_host,
        log_dir=log_dir,
        pipeline_wait_s=pipeline_wait_s,
    )
    node_options = NodeOptions(region=region, provider=provider, price_per_hour=price_per_hour)
    parts = _open_parts(
        backend, fake_fleet, state_file, models, driver, command_template, drain_path
    )
    config = AgentConfig(node, interval_s, node_options)
    weights_cache = (cache_dir, int(cache_max_gib * BYTES_PER_GIB))
    _run_agent(parts, api, token, weights_cache, reconcile, config, observe_window_s)
    render.stderr.print("agent stopped; its servers keep running", highlight=False)


@dataclass(frozen=True)
class _Parts:
    """What the agent opens before it runs: each can fail on a bad option or file."""

    gpus: GPUBackend
    state: StateFile
    manifest: Manifest
    drivers: dict[DriverKind, Driver]
    default_driver: DriverKind


def _log_level(log_level: str) -> str:
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    return level


def _open_parts(
    backend: BackendKind,
    fake_fleet: Path | None,
    state_file: Path,
    models: Path | None,
    driver: DriverKind,
    command_template: str | None,
    drain_path: str | None,
) -> _Parts:
    """The drivers, manifest, state file and GPU backend; exit 1 on any that cannot be opened."""
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
    return _Parts(gpus, state, manifest, drivers, driver)


def _run_agent(
    parts: _Parts,
    api: str,
    token: str,
    weights_cache: tuple[Path, int],  # directory, bytes at most
    reconcile: ReconcileConfig,
    config: AgentConfig,
    observe_window_s: float,
) -> None:
    """Run the agent until SIGINT/SIGTERM, then close what it opened."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    gpus = parts.gpus
    try:
        with gpus:
            gpu_ids, vendor = gpu_ids_of(gpus)
            prewarmer = Prewarmer(WeightCache(*weights_cache))
            for source in parts.manifest.warm_standby():
                prewarmer.request(source, ())
            launcher = Launcher(
                parts.manifest, parts.drivers, parts.default_driver, gpu_ids, vendor
            )
            reconciler = Reconciler(parts.state, ProcessRuntime(), launcher, reconcile, prewarmer)
            client = ApiClient(api, config.node, token)
            observer = Observer(config.node, parts.manifest, parts.default_driver, observe_window_s)
            standbys = StandbyKeeper(parts.manifest.weights_for, prewarmer)
            agent = Agent(config, client, gpus, reconciler, observer=observer, standbys=standbys)
            agent.run(stop)
            observer.close()
            prewarmer.close()
            client.close()
    except HALError as error:
        _fail(error.message)
    finally:
        parts.state.close()


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
