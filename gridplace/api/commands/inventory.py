"""``gridplace inventory``: read this machine's GPUs through the HAL and print a Node document.

Stdout holds only the YAML: derived ``GPUModel`` documents first (for GPUs the catalog lacks;
the Node refers to them), then the ``Node``. Notes (placeholders used, measured-vs-catalog
differences, benchmark figures, GPUs left out) go to stderr.

Exit codes: 0 the document was printed; 1 no GPU (``auto`` found none), a backend that cannot
start, an invalid fake fleet or option, or devices a Node cannot be built from; 2 usage (typer).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from gridplace.api import render
from gridplace.hal import (
    BackendKind,
    Benchmark,
    BenchmarkUnavailable,
    DeviceInfo,
    HALError,
    InventoryError,
    NodeOptions,
    NoGPUFound,
    TelemetryStore,
    build_inventory,
    match_device,
    open_backend,
    thermal_status,
)
from gridplace.hal.microbench import run_microbenchmark
from gridplace.specs import ThermalStatus, builtin_catalog

EXIT_INVALID = 1


BackendOption = Annotated[
    BackendKind,
    typer.Option("--backend", help="auto (NVML, then amdsmi), nvml, amdsmi or fake."),
]
FakeFleetOption = Annotated[
    Path | None,
    typer.Option("--fake-fleet", help="Fleet YAML for the fake backend (implies --backend fake)."),
]
NameOption = Annotated[
    str | None, typer.Option("--name", help="Node name (default: this host's name).")
]
RegionOption = Annotated[str | None, typer.Option("--region", help="Region of the node.")]
ProviderOption = Annotated[
    str | None, typer.Option("--provider", help="Provider (failure domain) of the node.")
]
PricePerHourOption = Annotated[
    float | None,
    typer.Option("--price-per-hour", min=0, help="USD per hour for the whole node."),
]
NetworkGbpsOption = Annotated[
    float, typer.Option("--network-gbps", min=0.001, help="Uplink, gigabits per second.")
]
BenchmarkOption = Annotated[
    bool,
    typer.Option(
        "--benchmark",
        help="Measure memory bandwidth and matmul throughput (needs torch or cupy); "
        "claims become 'benchmarked' when every GPU was measured.",
    ),
]
TelemetryDbOption = Annotated[
    Path | None,
    typer.Option(
        "--telemetry-db",
        help="SQLite telemetry history (written by the agent's sampler); fills status.thermal.",
    ),
]
WindowHoursOption = Annotated[
    float, typer.Option("--window-hours", min=0.01, help="Thermal summary window, hours.")
]


def command(
    backend: BackendOption = BackendKind.AUTO,
    fake_fleet: FakeFleetOption = None,
    name: NameOption = None,
    region: RegionOption = None,
    provider: ProviderOption = None,
    price_per_hour: PricePerHourOption = None,
    network_gbps: NetworkGbpsOption = 1.0,
    benchmark: BenchmarkOption = False,
    telemetry_db: TelemetryDbOption = None,
    window_hours: WindowHoursOption = 24.0,
) -> None:
    """Read this machine's GPUs and print a Node document (claims: probed)."""
    if backend is BackendKind.FAKE and fake_fleet is None:
        raise typer.BadParameter("--backend fake needs --fake-fleet FILE", param_hint="--backend")
    options = NodeOptions(
        name=name,
        region=region,
        provider=provider,
        price_per_hour=price_per_hour,
        network_gbps=network_gbps,
    )
    try:
        thermal = _thermal(telemetry_db, window_hours) if telemetry_db else None
        with open_backend(backend, fake_fleet) as gpus:
            devices = gpus.devices()
            backend_name = gpus.name
        benchmarks = _benchmarks(devices, backend_name) if benchmark else {}
        inventory = build_inventory(devices, options, thermal=thermal, benchmarks=benchmarks)
    except NoGPUFound as error:
        _error(
            "no GPU found on this machine",
            [*error.tried, "to describe GPUs by hand: --backend fake --fake-fleet FILE"],
        )
        raise typer.Exit(EXIT_INVALID) from None
    except InventoryError as error:
        _error("cannot build a Node from this machine's GPUs", error.reasons)
        raise typer.Exit(EXIT_INVALID) from None
    except HALError as error:
        _error(error.message, [])
        raise typer.Exit(EXIT_INVALID) from None
    for note in inventory.placeholders:
        render.stderr.print(f"[yellow]placeholder[/] {note}", highlight=False)
    for match in inventory.matches:
        for note in match.notes:
            render.stderr.print(f"note: {match.device.label}: {note}", highlight=False)
    for device in inventory.excluded:
        render.stderr.print(
            f"[yellow]left out[/] {device.label}: {'; '.join(device.problems) or 'unhealthy'}",
            highlight=False,
        )
    render.print_yaml(inventory.documents())
    render.stderr.print(
        f"{len(devices)} GPU(s) read through {backend_name}; node "
        f"{inventory.node.name!r}, claims {inventory.node.spec.claims.value}",
        highlight=False,
    )


def _error(headline: str, details: list[str]) -> None:
    render.stderr.print(f"[bold red]error:[/] {headline}", highlight=False)
    for line in details:
        render.stderr.print(f"  {line}", highlight=False)


def _thermal(path: Path, window_hours: float) -> ThermalStatus | None:
    if not path.is_file():
        raise HALError(f"telemetry history {path} does not exist")
    now_s = time.time()
    with TelemetryStore(path=path) as store:
        samples = store.samples()
    status = thermal_status(samples, now_s, window_hours=window_hours)
    if status is None:
        render.stderr.print(
            f"note: {path} has no sample in the last {window_hours:g} h that says whether "
            "clocks were capped; status.thermal left out",
            highlight=False,
        )
    return status


def _benchmarks(devices: list[DeviceInfo], backend_name: str) -> dict[int, Benchmark]:
    """Measured figures per device index; what cannot be measured is said on stderr."""
    if backend_name == "fake":
        render.stderr.print(
            "benchmark: fake devices cannot be measured; claims stay 'probed'", highlight=False
        )
        return {}
    catalog = builtin_catalog()
    results: dict[int, Benchmark] = {}
    for device in devices:
        if not device.healthy:
            continue
        try:
            spec = match_device(device, catalog).spec
        except InventoryError:
            spec = None  # uncatalogued and underivable: measure anyway, nothing to compare
        try:
            report = run_microbenchmark(device, spec)
        except BenchmarkUnavailable as error:
            render.stderr.print(f"benchmark: {error.message}", highlight=False)
            return {}
        for line in report.lines():
            render.stderr.print(f"benchmark: {device.label}: {line}", highlight=False)
        results[device.index] = report.benchmark
    return results
