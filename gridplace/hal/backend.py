"""The ``GPUBackend`` protocol every vendor module implements, and choosing one.

Owns: the protocol, the context-manager life cycle (init on enter, shutdown on exit) and ``auto``
detection (NVML, then amdsmi: the first that initialises and sees at least one GPU wins).
Must not: import a vendor library at module level (each backend does that lazily in ``open``), or
know about catalogs and Nodes.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from gridplace.hal.device import DeviceInfo, Telemetry
from gridplace.hal.errors import BackendUnavailable, HALError, NoGPUFound


class BackendKind(StrEnum):
    AUTO = "auto"
    NVML = "nvml"
    AMDSMI = "amdsmi"
    FAKE = "fake"


@runtime_checkable
class GPUBackend(Protocol):
    """One vendor's view of this machine's GPUs.

    ``open`` initialises the vendor library (raises ``BackendUnavailable`` when it cannot; a
    second call does nothing) and ``close`` shuts it down; use the backend as a context manager
    so shutdown always happens.
    ``devices`` and ``sample`` never raise for one bad device: a lost GPU comes back as an
    unhealthy record. They raise ``HALError`` only when the library itself fails.
    """

    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    def devices(self) -> list[DeviceInfo]: ...

    def sample(self) -> list[Telemetry]: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class ManagedBackend:
    """Mixin giving a backend the context-manager life cycle over its ``open``/``close``."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def make_backend(kind: BackendKind, fake_fleet: Path | None = None) -> GPUBackend:
    """An unopened backend of ``kind`` (not ``auto``: use ``open_backend`` for that)."""
    if kind is BackendKind.NVML:
        from gridplace.hal.nvml import NvmlBackend

        return NvmlBackend()
    if kind is BackendKind.AMDSMI:
        from gridplace.hal.amdsmi_backend import AmdSmiBackend

        return AmdSmiBackend()
    if kind is BackendKind.FAKE:
        from gridplace.hal.fake import FakeBackend

        if fake_fleet is None:
            raise HALError("the fake backend needs a fleet file (--fake-fleet FILE)", "fake")
        return FakeBackend.from_file(fake_fleet)
    raise ValueError(f"make_backend does not take {kind!r}; use open_backend for auto")


def open_backend(kind: BackendKind, fake_fleet: Path | None = None) -> GPUBackend:
    """An opened backend; the caller must ``close`` it (or use it in a ``with`` block).

    ``auto`` picks the fake backend when a fleet file is given, else tries NVML then amdsmi and
    keeps the first that initialises and sees a GPU. When none does it raises ``NoGPUFound``,
    whose ``tried`` says for each backend why it was passed over.
    """
    if kind is BackendKind.AUTO and fake_fleet is not None:
        kind = BackendKind.FAKE
    if kind is not BackendKind.AUTO:
        backend = make_backend(kind, fake_fleet)
        backend.open()
        return backend
    tried: list[str] = []
    for candidate in (BackendKind.NVML, BackendKind.AMDSMI):
        backend = make_backend(candidate)
        try:
            backend.open()
        except BackendUnavailable as error:
            tried.append(f"{candidate.value}: {error.message}")
            continue
        try:
            count = len(backend.devices())
        except HALError as error:
            backend.close()
            tried.append(f"{candidate.value}: {error.message}")
            continue
        if count:
            return backend
        backend.close()
        tried.append(f"{candidate.value}: initialised but reports 0 GPUs")
    raise NoGPUFound(tried)
