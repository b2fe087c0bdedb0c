"""Running the solves of a problem's independent parts (``decompose``): here, on local
processes, or on a Ray cluster — the engine is Ray's, not a home-made one.

Owns where the parts run, nothing about what they are. Each part's solve is deterministic (one
CP-SAT worker, fixed seed, a deterministic work budget), and results come back in the parts'
order whatever finished first, so the runner never changes the plan. ``SolverSettings.workers``
> 1 runs the parts on that many local processes; ``SolverSettings.ray_address`` on a Ray
cluster (``"local"``: a one-machine Ray started here, as the tests use; Ray 2.x dropped its
in-process local mode). Ray is an optional extra
(``pip install gridplace[scale]``); asking for it without it installed is a clear error.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from gridplace.planner.solver_settings import SolverSettings

# A local Ray (``ray_address="local"``): two workers and Ray's smallest object store, so that
# it stays small beside the rest of the machine.
LOCAL_RAY_CPUS = 2
LOCAL_RAY_STORE_BYTES = 80 * 1024 * 1024

NO_RAY = "needs Ray, which is not installed: pip install 'gridplace[scale]'"

# A job is what one part needs (a ``Problem``; a shard's inputs: ``shards``) and its settings.
Work = TypeVar("Work")
Result = TypeVar("Result")


class RayMissing(RuntimeError):
    """``ray_address`` was given but Ray is not installed."""


def require_ray(address: str | None) -> None:
    """Raise ``RayMissing`` now when ``address`` asks for Ray and Ray is not installed (rather
    than at the first plan that splits into parts)."""
    if address and importlib.util.find_spec("ray") is None:
        raise RayMissing(NO_RAY)


def run_parts(
    solve: Callable[[Work, SolverSettings], Result],
    jobs: Sequence[tuple[Work, SolverSettings]],
    settings: SolverSettings,
) -> list[Result]:
    """``solve``'s results for ``jobs`` in their order: on Ray when ``settings.ray_address`` is
    set, on ``settings.workers`` local processes when more than one, else one after another."""
    if settings.ray_address:
        return _on_ray(solve, jobs, settings.ray_address)
    if settings.workers > 1 and len(jobs) > 1:
        workers = min(settings.workers, len(jobs))
        # spawn, not fork: the API's solver worker has threads (a watchdog), and a forked
        # child of a threaded process may inherit a held lock.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(solve, problem, s) for problem, s in jobs]
            return [f.result() for f in futures]
    return [solve(problem, s) for problem, s in jobs]


def _on_ray(
    solve: Callable[[Work, SolverSettings], Result],
    jobs: Sequence[tuple[Work, SolverSettings]],
    address: str,
) -> list[Result]:
    try:
        import ray
    except ImportError as error:
        raise RayMissing(NO_RAY) from error
    if not ray.is_initialized():
        if address == "local":  # a one-machine Ray started here (Ray dropped its local_mode)
            ray.init(
                num_cpus=LOCAL_RAY_CPUS,
                object_store_memory=LOCAL_RAY_STORE_BYTES,
                include_dashboard=False,
                log_to_driver=False,
            )
        else:
            ray.init(address=address, log_to_driver=False)
    remote: Any = ray.remote(num_cpus=1)(solve)
    return list(ray.get([remote.remote(problem, s) for problem, s in jobs]))


__all__ = ["RayMissing", "require_ray", "run_parts"]
