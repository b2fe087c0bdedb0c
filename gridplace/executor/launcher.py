"""Turning a replica into a launch: the manifest picks its model, driver and weights file; a
pipeline's part is rendered from its stages; a port is free before a server takes it.

Owns: ``Launcher`` (a ``ReplicaSpec`` -> the ``LaunchSpec`` its driver builds) and ``free_port``.
Must not: start a process (``process`` does) or decide when to (``reconcile`` does).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.drivers import Driver, LaunchSpec, Target
from gridplace.executor.errors import DriverError
from gridplace.executor.manifest import DriverKind, Manifest, WeightSource
from gridplace.executor.pipeline import Pipeline, head_parts, stage_launch
from gridplace.executor.state import ReplicaRecord


@dataclass(frozen=True)
class Launcher:
    """Turns a replica into a ``LaunchSpec``: the manifest picks model, driver and weights."""

    manifest: Manifest
    drivers: Mapping[DriverKind, Driver]
    default_driver: DriverKind
    gpu_ids: Mapping[int, str]
    vendor: str = "nvidia"

    def weights(self, spec: ReplicaSpec) -> WeightSource | None:
        if spec.part:  # a pipeline stage's own process (rpc-server, Ray) loads no weights file
            return None
        return self.manifest.weights_for(spec.workload, spec.precision)

    def kind(self, spec: ReplicaSpec) -> DriverKind:
        return self.manifest.entry(spec.workload).driver or self.default_driver

    def expand(self, desired: Sequence[ReplicaSpec]) -> list[ReplicaSpec]:
        """The processes behind ``desired``: a vLLM pipeline's first stage is two."""
        return [part for spec in desired for part in head_parts(spec, self.kind(spec))]

    def launch_spec(
        self,
        spec: ReplicaSpec,
        replica_id: str,
        host: str,
        port: int,
        weights: Path | None,
        pipeline: Pipeline | None = None,
        advertise: str = "",
        workers: tuple[str, ...] = (),
    ) -> LaunchSpec:
        """The server of ``spec``; for a pipeline's part, rendered from ``pipeline`` (its stages,
        ``workers``: the later stages' addresses, ``advertise``: where peers reach this node)."""
        entry = self.manifest.entry(spec.workload)
        kind = entry.driver or self.default_driver
        driver = self.drivers.get(kind)
        if driver is None:
            raise DriverError(f"no {kind.value} driver is configured on this agent")
        target = Target(
            spec=spec,
            replica_id=replica_id,
            model=self.manifest.model_for(spec.workload),
            host=host,
            port=port,
            gpu_ids=dict(self.gpu_ids),
            vendor=self.vendor,
            weights_path=weights,
            quantization=entry.quantization,
        )
        if spec.pipeline:
            if pipeline is None:
                raise DriverError(f"{spec.key}: the pipeline's stages are not known")
            return stage_launch(driver, target, pipeline, advertise, workers)
        return driver.launch_spec(target)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host if host not in ("0.0.0.0", "::") else "127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def launching_record(
    record: ReplicaRecord,
    launch: LaunchSpec,
    listen: tuple[str, int],  # host, port the server listens on
    now: float,
    start_deadline_s: float,
) -> ReplicaRecord:
    """``record`` about to be launched: where it is probed (a wildcard listen address is probed
    on loopback), its command line and probes, and its start deadline."""
    host, port = listen
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return replace(
        record,
        port=port,
        endpoint=f"{probe_host}:{port}",
        argv=launch.argv,
        health_paths=launch.health_paths,
        inflight_metrics=launch.inflight_metrics,
        drain_path=launch.drain_path,
        started_at=now,
        deadline_at=now + start_deadline_s,
        updated_at=now,
    )
