"""Placeability checks that ``gridplace validate`` runs after the schema and reference checks.

A workload is placeable when compile keeps at least one option for it: some node can hold it at
an acceptable precision and meet its latency targets from at least one traffic source. The
reasons for the nodes that cannot are the planner's compile-time reasons (``explain``), and
its hints the fixes that were tried and place the workload (``planner.fixes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gridplace.api.wiring import bundle_fixes, compile_bundle
from gridplace.planner.explain import compile_summary
from gridplace.planner.fixes import NO_FIX
from gridplace.specs import SpecBundle


@dataclass(frozen=True)
class WorkloadCheck:
    """Whether one workload can be placed at all, and why not."""

    workload: str
    ok: bool
    reasons: list[str]
    origin: str


def check_workloads(bundle: SpecBundle) -> list[WorkloadCheck]:
    """One ``WorkloadCheck`` per workload, in input order."""
    problem = compile_bundle(bundle)
    refused = [w.name for w in problem.workloads if not problem.options_of(w.index)]
    fixes = bundle_fixes(bundle, refused) if refused else {}
    checks = []
    for demand in problem.workloads:
        placeable = bool(problem.options_of(demand.index))
        reasons, _ = compile_summary(problem, demand.index)
        hints = [fix.text() for fix in fixes.get(demand.name, [])] or [NO_FIX]
        checks.append(
            WorkloadCheck(
                workload=demand.name,
                ok=placeable,
                reasons=[] if placeable else reasons + [f"hint: {h}" for h in hints],
                origin=bundle.origin("InferenceWorkload", demand.name),
            )
        )
    return checks
