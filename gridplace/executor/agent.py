"""The node agent's loop: register, heartbeat, pull, reconcile, keep standbys, report, observe —
every ``interval_s``.

Owns: the order of one iteration (a node holding pipeline stages also reads their phases,
``GET /v1/nodes/{name}/pipelines``, for the reconciler's gates), what the agent does when the
API is away (keeps what runs, retries next time: an outage never stops a server), re-registering
when the API forgot the node (404), telemetry (HAL samples -> the thermal summary of the
heartbeat), and posting the observation windows the ``Observer`` closes (kept for the next loop
while the API is away, at most ``MAX_WINDOWS_PER_DOCUMENT``; a failed scrape or post never stops
the loop).
Must not: decide what runs (``reconcile``) or talk HTTP itself (``client``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gridplace.executor.client import ApiClient, Desired
from gridplace.executor.diff import desired_replicas
from gridplace.executor.errors import ApiError, ApiRejected
from gridplace.executor.observe import Observer
from gridplace.executor.pipeline import Pipeline, StagePeer, stage_specs
from gridplace.executor.reconcile import Reconciler, StepOutcome
from gridplace.executor.standby import StandbyKeeper
from gridplace.hal import (
    GPUBackend,
    HALError,
    NodeOptions,
    Telemetry,
    build_inventory,
    thermal_status,
)
from gridplace.specs import ObservationWindow
from gridplace.specs.observation import MAX_WINDOWS_PER_DOCUMENT
from gridplace.specs.plan import pipeline_id

log = logging.getLogger("gridplace.executor")
TELEMETRY_WINDOW_HOURS = 1.0  # the heartbeat's thermal summary: the last hour of samples
MAX_SAMPLES = 4_096


@dataclass(frozen=True)
class AgentConfig:
    node: str
    interval_s: float = 5.0
    options: NodeOptions = field(default_factory=NodeOptions)


def gpu_ids_of(backend: GPUBackend) -> tuple[dict[int, str], str]:
    """Assignment GPU index -> runtime device id (UUID when known), and the vendor."""
    devices = backend.devices()
    healthy = [d for d in devices if d.healthy] or devices
    ids = {i: (d.uuid if d.uuid else str(d.index)) for i, d in enumerate(healthy)}
    vendor = healthy[0].vendor.value if healthy else "nvidia"
    return ids, vendor


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        client: ApiClient,
        backend: GPUBackend,
        reconciler: Reconciler,
        clock: Callable[[], float] = time.time,
        observer: Observer | None = None,
        standbys: StandbyKeeper | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.backend = backend
        self.reconciler = reconciler
        self.clock = clock
        self.registered = False
        self.desired: Desired | None = None
        self._samples: deque[Telemetry] = deque(maxlen=MAX_SAMPLES)
        self.observer = observer
        self.standbys = standbys
        self.gpu_models: list[str] = []  # catalog GPU id per assignment GPU index
        self._windows: deque[ObservationWindow] = deque(maxlen=MAX_WINDOWS_PER_DOCUMENT)

    def node_document(self) -> dict[str, Any]:
        options = NodeOptions(
            name=self.config.node,
            region=self.config.options.region,
            provider=self.config.options.provider,
            price_per_hour=self.config.options.price_per_hour,
            network_gbps=self.config.options.network_gbps,
            labels=self.config.options.labels,
        )
        inventory = build_inventory(self.backend.devices(), options)
        self.gpu_models = [g.model for g in inventory.node.spec.gpus for _ in range(g.count)]
        return inventory.node.to_yaml_dict()

    def _register(self) -> None:
        created = self.client.register(self.node_document())
        self.registered = True
        log.info("node %s %s", self.config.node, "registered" if created else "re-registered")

    def _heartbeat(self) -> None:
        message = None
        thermal: dict[str, Any] | None = None
        healthy = True
        try:
            samples = self.backend.sample()
            self._samples.extend(samples)
            healthy = any(s.healthy for s in samples) if samples else False
            status = thermal_status(
                list(self._samples), self.clock(), window_hours=TELEMETRY_WINDOW_HOURS
            )
            thermal = status.to_yaml_dict() if status is not None else None
        except HALError as error:
            healthy, message = False, f"GPU telemetry failed: {error.message}"
        self.client.heartbeat(healthy, thermal, message)

    def run_once(self) -> StepOutcome:
        """One iteration. API errors are logged; what runs keeps running."""
        try:
            if not self.registered:
                self._register()
            self._heartbeat()
            self.desired = self.client.assignments()
        except ApiRejected as error:
            if error.status == 404:
                self.registered = False  # the API lost the node (new database): register again
            log.error("API refused: %s", error.message)
        except ApiError as error:
            log.warning("API unavailable, keeping the last known plan: %s", error.message)
        desired = self.desired
        # No plan at all (generation None) changes nothing: a wiped API must not stop servers.
        known = desired is not None and desired.generation is not None
        specs = None
        if desired and known:
            specs = desired_replicas(desired.assignments) + stage_specs(desired.stages)
        pipelines = self._pipelines(desired)
        outcome = self.reconciler.step(specs, desired.generation if desired else None, pipelines)
        for action in outcome.actions:
            log.debug("action: %s", action)
        report = outcome.report
        if self.standbys is not None and desired is not None and specs is not None:
            # After the reconcile step: standbys only fetch once the assigned replicas run.
            pinned = self.reconciler.pinned(specs)
            engines, busy = self.reconciler.standbys, self.reconciler.gpus_in_use(specs)
            items = self.standbys.step(desired.prewarm, outcome.applied, pinned, engines, busy)
            report = {**report, "standbys": items} if items else report
        if self.registered:
            try:
                self.client.report(report)
            except ApiError as error:
                log.warning("state report failed: %s", error.message)
        self._observe()
        return outcome

    def _pipelines(self, desired: Desired | None) -> dict[str, Pipeline]:
        """The pipelines this node holds a stage of, with every stage's phase as the API judges
        it now (asked only when there are any; ``peers`` None when the API did not answer, or
        does not list the pipeline: its plan moved on, and the next pull says so)."""
        replicas = {pipeline_id(a): a for a in (desired.assignments if desired else []) if a.stages}
        replicas.update(
            {role.pipeline: role.assignment for role in desired.stages} if desired else {}
        )
        if not replicas:
            return {}  # a pipeline part no longer planned here is stopped without its peers
        peers: dict[str, tuple[StagePeer, ...]] | None = None
        if self.registered:
            try:
                peers = self.client.pipelines()
            except ApiError as error:
                log.warning("pipeline stages not read, keeping what runs: %s", error.message)
        return {
            key: Pipeline(key, assignment, None if peers is None else peers.get(key))
            for key, assignment in replicas.items()
            if key is not None
        }

    def _observe(self) -> None:
        """Scrape the serving replicas; post the windows that closed (kept while the API is
        away; dropped when it refuses them, since resending would be refused again)."""
        if self.observer is None:
            return
        try:
            self._windows.extend(
                self.observer.sample(self.reconciler.state.records(), self.gpu_models)
            )
        except Exception:  # an observation must never cost a reconcile loop
            log.exception("observing the replicas failed")
        if not self._windows or not self.registered:
            return
        document = {
            "apiVersion": "gridplace/v1alpha1",
            "kind": "Observations",
            "metadata": {"name": f"observations-{int(self._windows[-1].end_s)}"},
            "spec": {"windows": [w.to_yaml_dict() for w in self._windows]},
        }
        try:
            self.client.post_observations(document)
            self._windows.clear()
        except ApiRejected as error:
            log.error(
                "observations refused, %d windows dropped: %s", len(self._windows), error.message
            )
            self._windows.clear()
        except ApiError as error:
            log.warning("observations not posted, kept for the next loop: %s", error.message)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; servers keep running when the agent stops."""
        log.info("agent for node %s: every %gs", self.config.node, self.config.interval_s)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:  # one bad iteration must not end the agent; the next may work
                log.exception("reconcile iteration failed")
            stop.wait(max(0.0, self.config.interval_s - (time.monotonic() - started)))
