"""Errors of the hal package.

    HALError                     anything the hardware layer cannot do; carries .backend
        BackendUnavailable       the vendor library is missing, cannot load or cannot init
        NoGPUFound               ``auto`` tried every backend and none has a GPU (.tried: reasons)
        VendorError              a vendor call failed unexpectedly (.call, .code); raised from the
                                 vendor's own exception
            DeviceLost           the device stopped answering (NVML GPU_IS_LOST / UNKNOWN);
                                 readers turn it into an unhealthy device record, never a crash
        FleetError               a fake-fleet description is not valid (.issues: list[str])
        InventoryError           devices were read but no Node can be built from them (.reasons)
        BenchmarkUnavailable     neither torch nor cupy can run on this node

"Not supported" is not an error: the backends return ``None`` for it. Only the CLI maps these to
exit codes (all of them to 1: they are about this machine, not about usage).
"""

from __future__ import annotations


class HALError(Exception):
    """Base of every hal error; ``backend`` names the backend involved, if any."""

    def __init__(self, message: str, backend: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend


class BackendUnavailable(HALError):
    """The vendor library cannot be imported, loaded or initialised on this machine."""


class NoGPUFound(HALError):
    """No backend found a GPU; ``tried`` holds one 'backend: why' line per backend."""

    def __init__(self, tried: list[str]) -> None:
        lines = "; ".join(tried) if tried else "no backend was tried"
        super().__init__(f"no GPU found on this machine ({lines})")
        self.tried = list(tried)


class VendorError(HALError):
    """A vendor library call failed in a way that is not 'not supported'."""

    def __init__(self, backend: str, call: str, code: int | None, detail: str) -> None:
        code_text = f" (code {code})" if code is not None else ""
        super().__init__(f"{backend}: {call} failed{code_text}: {detail}", backend)
        self.call = call
        self.code = code
        self.detail = detail


class DeviceLost(VendorError):
    """The GPU fell off the bus or stopped answering; the device is unhealthy."""


class FleetError(HALError):
    """A fake-fleet YAML file is not valid; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[str]) -> None:
        shown = "; ".join(issues[:5]) + (
            f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        )
        super().__init__(f"{source}: invalid fake fleet: {shown}", "fake")
        self.source = source
        self.issues = list(issues)


class InventoryError(HALError):
    """Devices were read but a Node cannot be built; ``reasons`` says why, one per device."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("cannot build a Node from this machine's GPUs: " + "; ".join(reasons))
        self.reasons = list(reasons)


class BenchmarkUnavailable(HALError):
    """The micro-benchmark cannot run here (no torch/cupy, or no device visible to them)."""
