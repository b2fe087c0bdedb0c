#!/usr/bin/env python3
"""GPU check: read every HAL field of this machine's NVIDIA GPUs through NVML, compare them with
the GPU catalog, summarise a few seconds of telemetry, and (optionally) run the micro-benchmark.

Run from the repository root; gridplace need not be installed::

    PYTHONPATH=. python3 bench/gpu_check.py                 # everything, torch benchmark included
    PYTHONPATH=. python3 bench/gpu_check.py --no-benchmark  # NVML only

Needs pynvml (nvidia-ml-py), pyyaml and pydantic; torch or cupy for the benchmark. It never stops
at a field the driver does not give (that prints as '-'); each section that fails prints why and
the next one runs. Exit 0 when at least one device was read, 1 when NVML cannot start or sees no
GPU. Takes well under a minute (about 1 s of sampling, ~5 s of benchmark per GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from collections.abc import Callable, Sequence

import yaml

from gridplace.hal import (
    BackendUnavailable,
    Benchmark,
    BenchmarkUnavailable,
    DeviceInfo,
    HALError,
    NodeOptions,
    Telemetry,
    build_inventory,
    match_device,
    thermal_status,
)
from gridplace.hal.match import CatalogMatch, effective_pcie, estimated_fp16_tflops
from gridplace.hal.microbench import run_microbenchmark
from gridplace.hal.nvml import NvmlBackend
from gridplace.specs import builtin_catalog


def show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, tuple) and not value:
        return "(none)"
    return str(value)


def table(title: str, rows: Sequence[Sequence[object]], header: Sequence[str] = ()) -> None:
    cells = [[show(c) for c in row] for row in ([header] if header else []) + list(rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))] if cells else []
    print(f"\n== {title}")
    for position, row in enumerate(cells):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if header and position == 0:
            print("  " + "  ".join("-" * width for width in widths))


def section(title: str, body: Callable[[], None]) -> bool:
    """Run one part of the check; a failure prints why and the check goes on."""
    try:
        body()
    except Exception as error:  # a GPU check must never stop at one broken part
        print(f"\n== {title}: FAILED: {type(error).__name__}: {error}")
        traceback.print_exc(limit=3, file=sys.stdout)
        return False
    return True


def ratio(measured: float | None, catalogued: float | None) -> str:
    if not measured or not catalogued:
        return "-"
    return f"{measured / catalogued:.1%}"


def device_fields(device: DeviceInfo) -> None:
    rows = [(f.name, getattr(device, f.name)) for f in dataclasses.fields(device)]
    rows.append(("memory_total_gib", device.memory_total_gib))
    table(f"{device.label}: every HAL field", rows)


def telemetry_fields(samples: list[Telemetry]) -> None:
    last = samples[-1]
    rows = [(f.name, getattr(last, f.name)) for f in dataclasses.fields(last)]
    rows += [("throttled", last.throttled), ("clock_ratio", last.clock_ratio)]
    table(f"GPU {last.device_index}: telemetry (last of {len(samples)} samples)", rows)


def catalog_comparison(match: CatalogMatch) -> None:
    device, spec = match.device, match.spec
    link = effective_pcie(device)
    estimate = estimated_fp16_tflops(device)
    rows = [
        ("catalog entry", f"{match.gpu_id} (matched by {match.matched_by})", spec.display_name, ""),
        ("VRAM GiB", device.memory_total_gib, spec.memory_gib,
         ratio(device.memory_total_gib, spec.memory_gib)),
        ("memory bus bits", device.memory_bus_width_bits, spec.memory_bus_width_bits,
         ratio(device.memory_bus_width_bits, spec.memory_bus_width_bits)),
        ("bandwidth GB/s (bus x clock)", match.derived_bandwidth_gbps, spec.memory_bandwidth_gbps,
         ratio(match.derived_bandwidth_gbps, spec.memory_bandwidth_gbps)),
        ("PCIe link (max)", f"gen{show(link.generation)} x{show(link.lanes)}",
         f"gen{spec.pcie.generation} x{spec.pcie.lanes}", ""),
        ("PCIe link (now)",
         f"gen{show(device.pcie_current.generation)} x{show(device.pcie_current.lanes)}", "", ""),
        ("compute capability", device.compute_capability, spec.compute_capability,
         "same" if device.compute_capability == spec.compute_capability else "DIFFERENT"),
        ("power limit W vs TDP", device.power_limit_watts, spec.tdp_watts,
         ratio(device.power_limit_watts, spec.tdp_watts)),
        ("fp16 tensor TFLOPS (estimate)", estimate, spec.tensor_tflops.fp16,
         ratio(estimate, spec.tensor_tflops.fp16)),
        ("NVLink peers", len(device.peers), spec.peer_link.kind.value if spec.peer_link else "-",
         ""),
    ]  # fmt: skip
    table(f"{device.label}: measured vs catalog", rows, ("figure", "measured", "catalog", "ratio"))
    for note in match.notes:
        print(f"  note: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-benchmark", action="store_true", help="skip the torch benchmark")
    parser.add_argument("--samples", type=int, default=5, help="telemetry samples, 0.2 s apart")
    args = parser.parse_args(argv)
    started = time.monotonic()
    backend = NvmlBackend()
    try:
        backend.open()
    except BackendUnavailable as error:
        print(f"NVML cannot start here: {error.message}")
        return 1
    samples: list[Telemetry] = []
    try:
        devices = backend.devices()
        for _ in range(max(1, args.samples)):
            samples.extend(backend.sample())
            time.sleep(0.2)
    except HALError as error:
        print(f"NVML failed: {error.message}")
        return 1
    finally:
        backend.close()
    if not devices:
        print("NVML initialised but reports no GPU")
        return 1
    print(f"read {len(devices)} GPU(s) through NVML in {time.monotonic() - started:.1f} s")
    catalog = builtin_catalog()
    matches: dict[int, CatalogMatch] = {}
    for device in devices:
        section("device fields", lambda device=device: device_fields(device))
        own = [s for s in samples if s.device_index == device.index]
        if own:
            section("telemetry", lambda own=own: telemetry_fields(own))

        def compare(device: DeviceInfo = device) -> None:
            matches[device.index] = match_device(device, catalog)
            catalog_comparison(matches[device.index])

        section("catalog comparison", compare)

    def summary() -> None:
        status = thermal_status(samples, samples[-1].timestamp_s, window_hours=1)
        table("thermal summary of the samples", [
            (name, getattr(status, name) if status else None)
            for name in ("throttle_ratio", "sustained_clock_ratio", "p95_temperature_c",
                         "forecast_throttle_ratio")
        ])  # fmt: skip

    section("thermal summary", summary)
    benchmarks: dict[int, Benchmark] = {}
    if not args.no_benchmark:
        for device in devices:
            match = matches.get(device.index)
            try:
                report = run_microbenchmark(device, match.spec if match else None)
            except BenchmarkUnavailable as error:
                print(f"\n== benchmark: {error.message}")
                break
            table(f"{device.label}: micro-benchmark ({report.framework})",
                  [(line,) for line in report.lines()])  # fmt: skip
            benchmarks[device.index] = report.benchmark

    def node_document() -> None:
        inventory = build_inventory(devices, NodeOptions(name="gpu-check"), catalog=catalog,
                                    benchmarks=benchmarks)  # fmt: skip
        print("\n== inventory (the Node `gridplace inventory` would print)")
        print(yaml.safe_dump_all(inventory.documents(), sort_keys=False), end="")

    section("inventory", node_document)
    print(f"\ngpu check done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
