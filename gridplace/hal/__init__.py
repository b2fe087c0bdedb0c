"""The hardware: GPU backends over NVML (``pynvml``), amdsmi and a fake fleet; inventory and
telemetry, and turning them into specs (``Node``, ``ThermalStatus``, derived ``GPUModel``).

Owns: everything that touches a GPU driver, and the arithmetic that turns its readings into
specs. Vendor libraries are imported lazily, inside ``open()``; "not supported" is ``None``, never
a crash; a lost GPU is an unhealthy device record.
Must not: import anything of gridplace's but ``specs`` (imports flow specs <- hal), map errors to
exit codes (the CLI does), or talk to the API.

Modules: ``backend`` (the ``GPUBackend`` protocol, choosing one), ``nvml``, ``amdsmi_backend``,
``fake`` (the vendors), ``device`` (records), ``match`` (catalog matching, derived figures),
``inventory`` (records -> Node), ``history`` (sampler and bounded store), ``thermal`` (throttle
ratio, forecast), ``microbench`` (bandwidth and matmul, torch or CuPy).

Errors (``errors``)::

    HALError
        BackendUnavailable       the vendor library is missing or cannot initialise
        NoGPUFound               auto detection found no GPU (.tried says why, per backend)
        VendorError              a vendor call failed (raised from the vendor's exception)
            DeviceLost           the GPU stopped answering (becomes an unhealthy record)
        FleetError               a fake-fleet file is invalid
        InventoryError           no Node can be built from the devices read
        BenchmarkUnavailable     no torch/CuPy with a visible GPU here
"""

from gridplace.hal.backend import BackendKind, GPUBackend, make_backend, open_backend
from gridplace.hal.device import DeviceInfo, PCIeState, PeerLink, Telemetry
from gridplace.hal.errors import (
    BackendUnavailable,
    BenchmarkUnavailable,
    DeviceLost,
    FleetError,
    HALError,
    InventoryError,
    NoGPUFound,
    VendorError,
)
from gridplace.hal.history import TelemetrySampler, TelemetryStore
from gridplace.hal.inventory import Inventory, NodeOptions, build_inventory
from gridplace.hal.match import Benchmark, CatalogMatch, derived_bandwidth_gbps, match_device
from gridplace.hal.thermal import forecast_throttle_ratio, thermal_status

__all__ = [
    "BackendKind",
    "BackendUnavailable",
    "Benchmark",
    "BenchmarkUnavailable",
    "CatalogMatch",
    "DeviceInfo",
    "DeviceLost",
    "FleetError",
    "GPUBackend",
    "HALError",
    "Inventory",
    "InventoryError",
    "NoGPUFound",
    "NodeOptions",
    "PCIeState",
    "PeerLink",
    "Telemetry",
    "TelemetrySampler",
    "TelemetryStore",
    "VendorError",
    "build_inventory",
    "derived_bandwidth_gbps",
    "forecast_throttle_ratio",
    "make_backend",
    "match_device",
    "open_backend",
    "thermal_status",
]
