"""The node's state report: what the agent tells the API about the replicas on its node.

Owns: the API's ``NodeStateReport`` as camelCase JSON — one item per replica (its reported phase,
endpoint and message, and the desired replicas not launched yet with why), the conditions
``Applied``, ``Progressing`` and ``Degraded`` with the time each last changed status, and
``observedGeneration``, and the pipeline stages this node holds (``stages``: one per pipeline
and stage, from the stage's own process when it has one, else from the server: ``ready`` with the
address peers use once it runs, ``failed``, else ``starting``). ``executor`` must not import
``api``, so the dict is built here and a test checks it against the API's model.
Must not: change the state file or a process (``reconcile`` does) or talk to the API (``agent``
does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.state import Phase, ReplicaRecord

REPORTED_PHASE = {
    Phase.LAUNCHING: "starting",
    Phase.STARTING: "starting",
    Phase.RUNNING: "running",
    Phase.DRAINING: "draining",
    Phase.FAILED: "failed",
}
MESSAGE_CHARS = 1000  # the API's limit on a message
WEIGHTS_DOWNLOADING = "weights downloading"  # the pending reason ``Progressing`` counts


@dataclass(frozen=True)
class StateReport:
    body: dict[str, Any]  # the NodeStateReport as JSON
    applied: bool  # every desired replica runs and nothing else is here


def replica_items(
    records: Sequence[ReplicaRecord], pending: Mapping[ReplicaSpec, str], advertise_host: str
) -> list[dict[str, Any]]:
    """The report's replicas: every row, then each pending spec that has no row yet."""
    replicas: list[dict[str, Any]] = []
    for record in records:
        item: dict[str, Any] = {
            "workload": record.spec.workload,
            "gpus": list(record.spec.gpus),
            "precision": record.spec.precision,
            "phase": REPORTED_PHASE[record.phase],
        }
        if record.port is not None and record.phase is not Phase.FAILED:
            item["endpoint"] = f"{advertise_host}:{record.port}"
        if record.message:
            item["message"] = record.message[:MESSAGE_CHARS]
        replicas.append(item)
    launched = Counter(r.spec for r in records if r.phase is not Phase.FAILED)
    for spec, why in sorted(pending.items()):
        if launched[spec] == 0 and not any(r.spec == spec for r in records):
            replicas.append(
                {
                    "workload": spec.workload,
                    "gpus": list(spec.gpus),
                    "precision": spec.precision,
                    "phase": "starting",
                    "message": why,
                }
            )
    return replicas


STAGE_PHASE = {Phase.RUNNING: "ready", Phase.FAILED: "failed"}  # any other: starting


def stage_items(records: Sequence[ReplicaRecord], advertise_host: str) -> list[dict[str, Any]]:
    """The report's pipeline stages (see the module docstring)."""
    chosen: dict[tuple[str, int], ReplicaRecord] = {}
    for record in records:
        spec = record.spec
        if not spec.pipeline:
            continue
        held = chosen.get((spec.pipeline, spec.stage))
        if held is None or (spec.part and not held.spec.part):  # the stage's process wins
            chosen[(spec.pipeline, spec.stage)] = record
    items = []
    for (pipeline, stage), record in sorted(chosen.items()):
        item: dict[str, Any] = {
            "pipeline": pipeline,
            "stage": stage,
            "phase": STAGE_PHASE.get(record.phase, "starting"),
        }
        if record.phase is Phase.RUNNING and record.port is not None:
            item["address"] = f"{advertise_host}:{record.port}"
        if record.message:
            item["message"] = record.message[:MESSAGE_CHARS]
        items.append(item)
    return items


class StateReporter:
    """Builds each step's report; remembers when each condition last changed status."""

    def __init__(self, advertise_host: str, clock: Callable[[], float]) -> None:
        self.advertise_host = advertise_host
        self.clock = clock
        self._conditions: dict[str, tuple[str, str]] = {}  # type -> (status, transition time)

    def _condition(self, kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        value = "True" if status else "False"
        previous = self._conditions.get(kind)
        if previous is None or previous[0] != value:
            stamp = datetime.fromtimestamp(self.clock(), UTC).isoformat()
            self._conditions[kind] = (value, stamp)
        return {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message[:MESSAGE_CHARS],
            "lastTransitionTime": self._conditions[kind][1],
        }

    def _applied(
        self,
        records: Sequence[ReplicaRecord],
        desired: Sequence[ReplicaSpec] | None,
        generation: int | None,
    ) -> tuple[bool, dict[str, Any]]:
        running = Counter(r.spec for r in records if r.phase is Phase.RUNNING)
        wanted = Counter(desired or [])
        applied = desired is not None and running == wanted and len(records) == sum(wanted.values())
        if desired is None:
            return applied, self._condition("Applied", False, "NoPlan", "no plan yet")
        if applied:
            message = f"{sum(wanted.values())} replica(s) of generation {generation} running"
            return applied, self._condition("Applied", True, "AllReplicasRunning", message)
        missing = sum((wanted - running).values())
        extra = len(records) - sum((running & wanted).values())
        message = f"{missing} desired replica(s) not running, {extra} other(s) still here"
        return applied, self._condition("Applied", False, "Reconciling", message)

    def _progressing(
        self, records: Sequence[ReplicaRecord], pending: Mapping[ReplicaSpec, str], applied: bool
    ) -> dict[str, Any]:
        starting = [r for r in records if r.phase in (Phase.LAUNCHING, Phase.STARTING)]
        draining = [r for r in records if r.phase is Phase.DRAINING]
        downloading = [s for s, why in pending.items() if why == WEIGHTS_DOWNLOADING]
        if downloading:
            progressing = ("WeightsDownloading", f"{len(downloading)} replica(s) wait for weights")
        elif starting:
            progressing = ("StartingReplicas", ", ".join(r.spec.key for r in starting))
        elif draining:
            progressing = ("DrainingReplicas", ", ".join(r.spec.key for r in draining))
        else:
            progressing = ("Idle" if applied else "Waiting", "")
        active = bool(downloading or starting or draining)
        return self._condition("Progressing", active, *progressing)

    def _degraded(
        self, records: Sequence[ReplicaRecord], fetch_errors: Sequence[str]
    ) -> dict[str, Any]:
        failed = [r for r in records if r.phase is Phase.FAILED]
        messages = [f"{r.spec.key}: {r.message}" for r in failed] + list(fetch_errors)
        if not messages:
            reason = "AsExpected"
        else:
            reason = "ReplicaFailed" if failed else "WeightsFetchFailed"
        return self._condition("Degraded", bool(messages), reason, "; ".join(messages))

    def report(
        self,
        records: Sequence[ReplicaRecord],
        pending: Mapping[ReplicaSpec, str],
        desired: Sequence[ReplicaSpec] | None,
        generation: int | None,
        fetch_errors: Sequence[str] = (),
    ) -> StateReport:
        """The report on ``records`` (the state file's rows) after a step.

        ``pending``: desired replicas not launched, with why; ``desired`` None: no plan known yet;
        ``fetch_errors``: why the pre-warmer's last fetches failed.
        """
        applied, applied_condition = self._applied(records, desired, generation)
        body: dict[str, Any] = {
            "replicas": replica_items(records, pending, self.advertise_host),
            "conditions": [
                applied_condition,
                self._progressing(records, pending, applied),
                self._degraded(records, fetch_errors),
            ],
        }
        if generation is not None:
            body["observedGeneration"] = generation
        stages = stage_items(records, self.advertise_host)
        if stages:
            body["stages"] = stages
        return StateReport(body=body, applied=applied)
