#!/usr/bin/env python3
"""The serving process's cost of one periodic change check (``Replanner.check``) on a large grid.

Run from the repository root::

    .venv/bin/python bench/replan_check.py --nodes 10000 --holders 1000 --repeats 5

``--nodes`` nodes (the example grid's, cloned) are registered in a fresh SQLite file with a
stored plan whose replicas sit on the first ``--holders`` of them, every node heard from just
now. Each scenario then runs one check, ``--repeats`` times: ``steady`` (nothing changed),
``holder-silent`` (one node holding replicas silent past the grace period) and ``calibration``
(a calibration other than the plan's is the latest). The replan a check decides on is not
solved (``PlanService.recompute`` answers at once): measured is what the check itself costs the
serving process. Printed per scenario: the median CPU seconds of a check (``time.process_time``,
this process only), the peak of Python allocations during one (``tracemalloc``, a separate run:
tracing slows the CPU figure), and node documents built (``Store`` records). Run it against
another checkout (``PYTHONPATH=OTHER``) for a before/after on the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridplace.api.bodies import reparse
from gridplace.api.metrics import Metrics
from gridplace.api.replan import Replanner
from gridplace.api.service import PlanService
from gridplace.api.settings import Settings
from gridplace.api.store import NewPlan, NodeBasis, Store
from gridplace.api.store import store as store_module
from gridplace.planner.recalibrate import Calibration, Correction
from gridplace.specs import NodeStatus, PlacementPlan, build_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import nodes_for  # a sibling script, not a package

GRACE_S = 120.0
WORKLOAD = {
    "apiVersion": "gridplace/v1alpha1",
    "kind": "InferenceWorkload",
    "metadata": {"name": "w"},
    "spec": {
        "model": "llama-3.1-8b",
        "precisions": ["fp8", "int4"],
        "slo": {"ttftMs": 2000, "itlMs": 100},
        "traffic": {
            "requestsPerSecond": 2.0,
            "promptTokens": 500,
            "outputTokens": 200,
            "sources": [{"region": "eu-west", "share": 1.0}],
        },
        "replicas": {"min": 1, "max": 10_000},
    },
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def grid(url: str, nodes: int, holders: int, clock: Clock) -> tuple[Store, list[str]]:
    """A store with ``nodes`` nodes and a plan with one replica on each of the first
    ``holders``; the names of the holders."""
    store = Store.open(url)
    documents = reparse(nodes_for(nodes), "bench")
    registered = build_bundle(documents).nodes
    store.upsert_nodes(registered, clock())
    names = [node.name for node in registered[:holders]]
    plan = PlacementPlan.model_validate(
        {
            "metadata": {"name": "plan-1", "generation": 1},
            "spec": {
                "assignments": [
                    {"workload": "w", "node": name, "gpus": [0], "precision": "fp8"}
                    for name in names
                ]
            },
            "status": {"workloads": [], "unplaced": []},
        }
    )
    basis = {node.name: NodeBasis(healthy=True, throttle_ratio=0.0) for node in registered}
    new = NewPlan(plan, 0, "submitted", [], [WORKLOAD], {}, basis, [], 0.0, 0.0)
    store.add_plan(new, clock())
    return store, names


def heard(store: Store, names: list[str], now: datetime) -> None:
    """Every one of ``names`` heard from at ``now`` (one batch)."""
    store.buffer_heartbeats(3600)
    for name in names:
        store.record_heartbeat(name, NodeStatus(healthy=True), now)
    store.flush_heartbeats()


def counted_records() -> list[int]:
    built = [0]
    record = store_module._node_record

    def counting(row: Any) -> Any:
        built[0] += 1
        return record(row)

    store_module._node_record = counting  # type: ignore[assignment]
    return built


def measure(
    check: Callable[[], object], repeats: int, built: list[int], decided: list[list[str]]
) -> dict[str, float]:
    """Median CPU of ``repeats`` checks, documents built by the last, then one traced check."""
    cpu = []
    before = len(decided)
    for _ in range(repeats):
        built[0] = 0
        start = time.process_time()
        check()
        cpu.append(time.process_time() - start)
    documents = built[0]
    tracemalloc.start()
    check()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    replans = (len(decided) - before) / (repeats + 1)
    return {
        "cpu_s": statistics.median(cpu),
        "peak_mib": peak / 2**20,
        "documents": documents,
        "replans": replans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--holders", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    clock = Clock(started)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'gridplace.db'}"
        setup_start = time.perf_counter()
        store, holders = grid(url, args.nodes, args.holders, clock)
        settings = Settings(
            database_url=url,
            admin_token="bench-admin-token-0123456789",
            heartbeat_grace_s=GRACE_S,
            solve_in_subprocess=False,
            replan_interval_s=0,
        )
        metrics = Metrics()
        service = PlanService(store, settings, metrics, clock, started)
        decided: list[list[str]] = []

        def recompute(latest: Any, trigger: str, reasons: list[str]) -> Any:
            decided.append(reasons)
            return latest  # not solved: the check's own cost is measured

        service.recompute = recompute  # type: ignore[method-assign]
        names = [record.name for record in store.nodes()]
        clock.now = started + timedelta(seconds=GRACE_S + 30)
        heard(store, names, clock.now - timedelta(seconds=10))
        print(
            f"{args.nodes} nodes, {len(holders)} holding replicas, SQLite; set up in "
            f"{time.perf_counter() - setup_start:.1f} s"
        )
        built = counted_records()

        def check() -> object:
            return Replanner(service, metrics).check()

        results = {"steady": measure(check, args.repeats, built, decided)}
        heard(store, [n for n in names if n != holders[0]], clock.now)  # holders[0] silent now
        clock.now += timedelta(seconds=GRACE_S - 5)
        results["holder-silent"] = measure(check, args.repeats, built, decided)
        heard(store, names, clock.now)
        key = (store.nodes(limit=1)[0].node.spec.gpus[0].model, "llama-3.1-8b", "fp8", "vllm")
        calibration = Calibration(gpu_types={key: Correction(1.5, 1.5, 100.0, 100.0)})
        store.add_calibration(calibration.as_dict(), clock(), 8)
        results["calibration"] = measure(check, args.repeats, built, decided)
        store.close()
    print(f"{'scenario':<16}{'CPU s (median)':>16}{'peak MiB':>10}{'documents':>11}{'replans':>9}")
    for scenario, result in results.items():
        print(
            f"{scenario:<16}{result['cpu_s']:>16.3f}{result['peak_mib']:>10.1f}"
            f"{int(result['documents']):>11}{int(result['replans']):>9}"
        )
    print(f"command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
