"""The node's state report on its own (no state file, no runtime): replica items, the conditions'
reasons, and transition times that move only when a condition's status changes."""

from __future__ import annotations

from gridplace.api.models import NodeStateReport
from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.report import WEIGHTS_DOWNLOADING, StateReporter
from gridplace.executor.state import Phase, ReplicaRecord
from tests.executor.fakes import Clock

A = ReplicaSpec("a", (0,), "fp8")
B = ReplicaSpec("b", (1,), "fp8")


def record(spec: ReplicaSpec, phase: Phase, **fields: object) -> ReplicaRecord:
    return ReplicaRecord(f"{spec.workload}-1", spec, 1, phase, **fields)  # type: ignore[arg-type]


def conditions(body: dict[str, object]) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in body["conditions"]}  # type: ignore[attr-defined]


def test_running_replicas_with_their_endpoints_are_applied() -> None:
    reporter = StateReporter("10.0.0.5", Clock())
    report = reporter.report([record(A, Phase.RUNNING, port=8001)], {}, [A], 7)
    body = NodeStateReport.model_validate(report.body)
    assert report.applied and body.observed_generation == 7
    assert [(r.workload, r.endpoint) for r in body.replicas] == [("a", "10.0.0.5:8001")]
    assert conditions(report.body)["Progressing"]["reason"] == "Idle"


def test_a_pending_replica_is_listed_as_starting_with_why() -> None:
    reporter = StateReporter("127.0.0.1", Clock())
    report = reporter.report([], {B: WEIGHTS_DOWNLOADING}, [B], 1)
    assert not report.applied
    assert report.body["replicas"] == [
        {"workload": "b", "gpus": [1], "precision": "fp8", "phase": "starting",
         "message": WEIGHTS_DOWNLOADING}
    ]  # fmt: skip
    progressing = conditions(report.body)["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("True", "WeightsDownloading")


def test_failures_and_fetch_errors_make_it_degraded() -> None:
    reporter = StateReporter("127.0.0.1", Clock())
    failed = record(A, Phase.FAILED, message="the server exited unexpectedly")
    degraded = conditions(reporter.report([failed], {}, [A], 1).body)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ReplicaFailed")
    fetch = conditions(reporter.report([], {}, [], 1, ["sha: checksum mismatch"]).body)["Degraded"]
    assert (fetch["reason"], fetch["message"]) == ("WeightsFetchFailed", "sha: checksum mismatch")


def test_a_transition_time_moves_only_when_the_status_changes() -> None:
    clock = Clock()
    reporter = StateReporter("127.0.0.1", clock)
    first = conditions(reporter.report([], {}, None, None).body)["Applied"]
    assert first["reason"] == "NoPlan"
    clock.advance(60)
    still = conditions(reporter.report([record(A, Phase.STARTING)], {}, [A], 1).body)["Applied"]
    assert still["status"] == "False" and still["reason"] == "Reconciling"
    assert still["lastTransitionTime"] == first["lastTransitionTime"]
    clock.advance(60)
    done = conditions(reporter.report([record(A, Phase.RUNNING)], {}, [A], 1).body)["Applied"]
    assert done["status"] == "True" and done["lastTransitionTime"] > first["lastTransitionTime"]
