"""Where plans are solved: in a worker process (the default) or in the calling thread.

Compiling and de-aggregating a plan is seconds of pure Python on a large grid; in the server's
own process it would hold the GIL and stall every agent's heartbeat meanwhile. A worker process
(``spawn``: the server has threads, so no ``fork``) keeps the API answering while it plans. The
worker ignores SIGINT (a Ctrl-C on ``gridplace serve`` reaches the whole process group; the server
shuts the pool down itself), and a worker that died is replaced on the next plan (this one: 503).

A worker dies with the server: a watchdog thread in it exits the process once its parent is gone
(the server was SIGKILLed; its parent pid changes to a reaper's), and multiprocessing's resource
tracker ends when the last worker holding its pipe does. ``prctl(PR_SET_PDEATHSIG)`` is not used:
it fires when the *thread* that spawned the worker ends, and replacement workers are spawned from
request threads that the thread pool retires when idle.

A plan handed a ``StoredGrid`` reads its nodes and probes in the worker (``stored_grid``), so the
serving process does not hold the grid.

Must not: write to the store, or know about HTTP beyond raising ``Unavailable``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from gridplace.api.checks import WorkloadCheck, check_workloads
from gridplace.api.errors import Unavailable
from gridplace.api.store import NodeBasis
from gridplace.api.stored_grid import StoredGrid, read
from gridplace.api.wiring import plan_bundle
from gridplace.planner.explain import compile_refusals, compile_summary
from gridplace.planner.planning import PlanResult, Strategy
from gridplace.planner.recalibrate import Calibration
from gridplace.planner.shards import ShardCount
from gridplace.planner.solve import SolverSettings
from gridplace.specs import PlacementPlan, SpecBundle
from gridplace.specs.fixes import Fix

T = TypeVar("T")


@dataclass(frozen=True)
class Solved:
    """What a solve hands back (small and picklable: the compiled problem stays behind)."""

    plan: PlacementPlan
    explanation: list[dict[str, Any]]
    compile_s: float
    solve_s: float
    basis: dict[str, NodeBasis] | None = None  # each node as planned on, when read here


def solve(
    bundle: SpecBundle,
    strategy: Strategy,
    settings: SolverSettings,
    previous: PlacementPlan | None,
    budget_per_hour: float | None,
    calibration: Calibration | None = None,
    grid: StoredGrid | None = None,
    shards: ShardCount = 1,
) -> Solved:
    """Plan ``bundle`` (in whichever process runs this) and explain the result; with ``grid``,
    on the stored nodes and probes, read here; in ``shards`` (``wiring.plan_bundle``)."""
    basis = None
    if grid is not None:
        view, probes = read(grid)
        bundle = replace(bundle, nodes=view.planner_nodes(), probes=probes)
        basis = {node.name: node.basis for node in view.nodes}
    result = plan_bundle(
        bundle, strategy, settings, previous, budget_per_hour, calibration=calibration,
        shards=shards,
    )  # fmt: skip
    return Solved(result.plan, explain(result), result.compile_s, result.solve_s, basis)


def check(bundle: SpecBundle) -> list[WorkloadCheck]:
    return check_workloads(bundle)


def explain(result: PlanResult) -> list[dict[str, Any]]:
    """Per workload: placed or not, replicas and coverage, the reasons as data (``reasons``)
    and as text (``summary``), hints and fixes."""
    status = result.plan.status
    unplaced = {u.workload: u for u in status.unplaced} if status else {}
    coverage = {c.name: c for c in status.workloads} if status else {}
    entries = []
    for demand in result.problem.workloads:
        summary, hints = compile_summary(result.problem, demand.index)
        refusals = compile_refusals(result.problem, demand.index)
        fixes: list[Fix] = []
        missing = unplaced.get(demand.name)
        if missing is not None:
            summary, hints = list(missing.reasons), list(missing.hints)
            refusals, fixes = list(missing.refusals), list(missing.fixes)
        covered = coverage.get(demand.name)
        entries.append(
            {
                "name": demand.name,
                "placed": missing is None,
                "replicas": covered.replicas if covered and covered.replicas is not None else 0,
                "demandRps": covered.demand_rps if covered else None,
                "capacityRps": covered.capacity_rps if covered else None,
                "sloMet": covered.slo_met if covered else False,
                "reasons": [r.model_dump(mode="json", by_alias=True) for r in refusals],
                "summary": summary,
                "hints": hints,
                "fixes": [fix.model_dump(mode="json", by_alias=True) for fix in fixes],
            }
        )
    return entries


PARENT_CHECK_S = 0.5  # how soon a worker notices that the server is gone


def _prepare_worker(parent_pid: int) -> None:
    """In each worker: ignore Ctrl-C, and exit when ``parent_pid`` is no longer the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with_parent, args=(parent_pid,), name="parent-watchdog", daemon=True
    ).start()


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)  # the server is gone: nobody will read this worker's answer


def _ready() -> bool:
    return True  # importing this module in the worker loaded the planner: it is warm


class SolverPool:
    """``processes`` worker processes, or none (0: solve in the calling thread); a plan's
    independent parts run on ``part_workers`` processes of their own, or on the Ray cluster at
    ``ray_address`` (``planner/parts.py``)."""

    def __init__(
        self, processes: int, part_workers: int = 1, ray_address: str | None = None
    ) -> None:
        self.processes = processes
        self.part_workers = part_workers
        self.ray_address = ray_address
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_prepare_worker,
                    initargs=(os.getpid(),),
                )
            return self._executor

    def warm(self) -> Future[bool] | None:
        """Start the workers now, so that the first plan does not wait for their imports."""
        return self._pool().submit(_ready) if self.processes else None

    def solve(
        self,
        bundle: SpecBundle,
        strategy: Strategy,
        time_limit_s: float,
        previous: PlacementPlan | None,
        budget_per_hour: float | None,
        calibration: Calibration | None = None,
        grid: StoredGrid | None = None,
        shards: ShardCount = 1,
    ) -> Solved:
        settings = SolverSettings(
            time_limit_s=time_limit_s, workers=self.part_workers, ray_address=self.ray_address
        )
        args = (bundle, strategy, settings, previous, budget_per_hour, calibration, grid, shards)
        if not self.processes:
            return solve(*args)
        return self._wait(self._pool().submit(solve, *args))

    def check(self, bundle: SpecBundle) -> list[WorkloadCheck]:
        if not self.processes:
            return check(bundle)
        return self._wait(self._pool().submit(check, bundle))

    def _wait(self, future: Future[T]) -> T:
        try:
            return future.result()
        except BrokenProcessPool:
            with self._lock:
                broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            raise Unavailable("the planner process stopped unexpectedly; retry") from None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
