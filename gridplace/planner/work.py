"""Deterministic solver work: the clock the staged solve budgets its stages and windows by.

Owns how a time limit becomes CP-SAT parameters and how the work done so far is counted; it must
not decide how a limit is shared out (``solve``, ``windows``). CP-SAT counts its work in
deterministic time units (``max_deterministic_time``, ``deterministic_time`` of a response),
which do not depend on machine load: with one worker and a fixed seed, a budget stated in them
gives the same plan on an idle and on a busy machine. A wall-clock limit gave a loaded machine
fewer search steps, and the example plan changed from run to run (``docs/solver-tuning.md``).

Budgets are stated in *reference seconds*: ``UNITS_PER_SECOND`` deterministic units each, the
rate one CP-SAT worker does its work at on one core of the reference machine when it has the
core to itself (measured on the example grid's solves, from the solving thread's CPU time:
``docs/solver-tuning.md``). So a reference second is a second of wall time on an unloaded core;
a faster machine finishes the same work sooner and a loaded one later, and the plan is the same.
Each solve also gets a wall-clock cap, ``WALL_CAP_FACTOR`` x its budget plus ``WALL_CAP_FLOOR_S``,
only as a safety net against a machine so slow that the work would not end: should one fire, the
plan may differ. The floor matters for the many small window solves: without it a cap fired on a
loaded machine (presolve alone took longer than 10 x the budget) and changed the example's plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model

UNITS_PER_SECOND = 0.45  # CP-SAT deterministic time units per reference second
MIN_SOLVE_S = 0.05  # the least a solve is given (reference seconds)
WALL_CAP_FACTOR = 10.0  # safety net: a solve's wall-clock cap, x its budget ...
WALL_CAP_FLOOR_S = 60.0  # ... plus this, so that load alone never reaches it
# What a window solve costs the clock at least (reference seconds): a window that presolve
# settles reports almost no deterministic time, and a budget only in those units would let
# passes of such windows run on for as long as Python takes to build them.
MIN_CHARGE_S = 0.02
# What a small window (tens of workloads, presolve off or settling it) costs the clock at least:
# building it in Python and CP-SAT's solve of it took ~0.045 CPU s when a window's model went
# through CP-SAT's builders, so a budget counted at MIN_CHARGE_S ran ~2.7 CPU s per reference s
# for 30-workload cost windows; written field by field (``window_state``) a 30-workload window
# builds in ~4 ms and costs 20-30 CPU ms with its solve (median, load 7-10), ~0.03 CPU s with
# the search's own bookkeeping (docs/solver-tuning.md).
SMALL_WINDOW_CHARGE_S = 0.03
# What building a replan's window of a large model (``SolverSettings.window_workloads`` = 100
# workloads, presolve on) costs beside its solve's work: a replan of 10,000 x 1,000 after 5% of
# nodes vanished ran 0.065-0.147 CPU s per window (medians, high and moderate utilization)
# where its solves' work was 0.02-0.094 reference s, and a 7.5-reference-second replan's solve
# took 9.4-11.3 CPU s (docs/solver-tuning.md).
REPLAN_WINDOW_BUILD_S = 0.05


def limit(solver: cp_model.CpSolver, budget_s: float) -> None:
    """Give ``solver`` a budget of ``budget_s`` reference seconds of deterministic work."""
    budget_s = max(MIN_SOLVE_S, budget_s)
    solver.parameters.max_deterministic_time = budget_s * UNITS_PER_SECOND
    solver.parameters.max_time_in_seconds = budget_s * WALL_CAP_FACTOR + WALL_CAP_FLOOR_S


@dataclass
class WorkClock:
    """Reference seconds of deterministic work spent so far, charged solve by solve."""

    spent_s: float = 0.0

    def charge(self, solver: cp_model.CpSolver, at_least_s: float = 0.0) -> None:
        """Count the work of ``solver``'s last solve (at least ``at_least_s``)."""
        work_s = solver.response_proto.deterministic_time / UNITS_PER_SECOND
        self.spent_s += max(at_least_s, work_s)

    def add(self, spent_s: float) -> None:
        """Count work done on another clock (a nested solve)."""
        self.spent_s += spent_s
