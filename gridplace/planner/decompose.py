"""Independent parts of a problem, solved apart and merged: the structure a large grid has.

Owns splitting a ``Problem`` into the parts that share nothing and putting their solutions back
together; ``solve.solve_problem`` calls it and ``parts`` runs the solves (in this process, in
local processes or on a Ray cluster). Workloads and pools are linked by options: two workloads
interact only through a pool both may use, so the connected components of that graph are
problems of their own. Every family of the model (``model.py``) is per workload, per pool or
per option except the budget, which spans all workloads: a problem with a budget is one part.
Every objective is a sum over workloads and options, so the lexicographic optimum of the whole
is the union of the parts' optima: on a grid whose parts solve to optimality the merged plan is
the whole model's plan (``tests/planner/test_decompose.py``).

A grid whose workloads can reach every pool does not split. ``by_site`` makes it split: each
workload keeps only its options on pools of its *home site* (the site of its largest traffic
source; sites are the topology's, by default one per region), so the parts are the sites; the
merged solution of that restricted problem is a valid start for the whole model, whose solve
then reconciles what crosses sites (a source far from home, a site out of capacity).

Each part gets a share of the deterministic work budget (``work.py``) in proportion to its
options (at least ``MIN_PART_SHARE`` of it), and parts are merged in the order of their first
workload: the same problem gives the same plan however the parts are run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gridplace.planner.problem import Option, PreviousReplica, Problem
from gridplace.planner.solver_settings import Solution, SolverSettings, StageResult

MIN_PART_SHARE = 0.05  # of the time limit, so that a small part is not starved by a large one


@dataclass(frozen=True)
class Part:
    """One independent part: its own ``Problem`` (indices from 0) and the whole problem's
    indices of its workloads and options, in the part's order."""

    problem: Problem
    workloads: tuple[int, ...]
    options: tuple[int, ...]


def split(problem: Problem) -> list[Part]:
    """The problem's independent parts in order of their first workload (one part when the
    problem does not split: a budget, or everything linked)."""
    if problem.budget_per_hour is not None or not problem.workloads:
        return [_part(problem, [w.index for w in problem.workloads])]
    parent = list(range(len(problem.workloads) + len(problem.pools)))

    def find(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    offset = len(problem.workloads)
    for option in problem.options:
        for pool in option.pools:  # a pipeline links every pool it has a stage on
            a, b = find(option.workload), find(offset + pool)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the root is the smallest member: a workload first
    members: dict[int, list[int]] = {}
    for w in problem.workloads:
        members.setdefault(find(w.index), []).append(w.index)
    groups = sorted(members.values(), key=lambda g: g[0])
    if len(groups) == 1:
        return [_part(problem, groups[0])]
    return [_part(problem, group) for group in groups]


def _part(problem: Problem, workloads: Sequence[int]) -> Part:
    """The sub-problem of ``workloads`` and the pools their options use, renumbered."""
    if len(workloads) == len(problem.workloads):
        return Part(problem, tuple(workloads), tuple(o.index for o in problem.options))
    chosen = set(workloads)
    options = [o for o in problem.options if o.workload in chosen]
    pool_ids = sorted({p for o in options for p in o.pools})
    new_pool = {old: new for new, old in enumerate(pool_ids)}
    new_workload = {old: new for new, old in enumerate(workloads)}
    new_option = {o.index: new for new, o in enumerate(options)}

    def renumber(option: Option) -> Option:
        return dataclasses.replace(
            option,
            index=new_option[option.index],
            workload=new_workload[option.workload],
            pool=new_pool[option.pool],
            stages=tuple(dataclasses.replace(s, pool=new_pool[s.pool]) for s in option.stages),
        )

    def previous(replica: PreviousReplica) -> PreviousReplica:
        option = None if replica.option is None else new_option.get(replica.option)
        return dataclasses.replace(replica, workload=new_workload[replica.workload], option=option)

    sub = Problem(
        workloads=tuple(
            dataclasses.replace(problem.workloads[w], index=new_workload[w]) for w in workloads
        ),
        pools=tuple(dataclasses.replace(problem.pools[p], index=new_pool[p]) for p in pool_ids),
        options=tuple(renumber(o) for o in options),
        rejections=(),  # only explain reads them, on the whole problem
        node_gpu_counts=problem.node_gpu_counts,
        previous=tuple(previous(r) for r in problem.previous if r.workload in chosen),
        budget_per_hour=None,
    )
    return Part(sub, tuple(workloads), tuple(o.index for o in options))


@dataclass(frozen=True)
class Restricted:
    """The problem with each workload's options cut to its home site's pools; ``options``
    holds the whole problem's index of each option kept."""

    problem: Problem
    options: tuple[int, ...]


def by_site(problem: Problem, site_of_region: Mapping[str, str]) -> Restricted:
    """Each workload's options only on pools of its home site (the site of its largest source,
    ties by source order; a pool's site is its region's). Options a previous plan's replicas use
    stay, so that pinned replicas keep their option. A region missing from ``site_of_region``
    is a site of its own."""
    site = {p.index: site_of_region.get(p.region, p.region) for p in problem.pools}
    home: dict[int, str] = {}
    for w in problem.workloads:
        region = max(w.sources, key=lambda item: item[1])[0] if w.sources else ""
        home[w.index] = site_of_region.get(region, region)
    used = {r.option for r in problem.previous if r.option is not None}
    kept = [o for o in problem.options if site[o.pool] == home[o.workload] or o.index in used]
    new_option = {o.index: new for new, o in enumerate(kept)}
    previous = tuple(
        dataclasses.replace(r, option=None if r.option is None else new_option[r.option])
        for r in problem.previous
    )
    restricted = dataclasses.replace(
        problem,
        options=tuple(dataclasses.replace(o, index=new_option[o.index]) for o in kept),
        previous=previous,
    )
    return Restricted(restricted, tuple(o.index for o in kept))


def part_settings(settings: SolverSettings, part: Part, total_options: int) -> SolverSettings:
    """The part's share of the work budget: in proportion to its options, times the parts
    solved at once (``workers``: each has the wall time of the whole), at least
    ``MIN_PART_SHARE``, at most all of it. Settings alone decide it, never the machine."""
    share = len(part.options) / max(1, total_options) * max(1, settings.workers)
    return dataclasses.replace(
        settings, time_limit_s=settings.time_limit_s * max(MIN_PART_SHARE, min(1.0, share))
    )


def merge(parts: Sequence[Part], solutions: Sequence[Solution], wall_s: float) -> Solution:
    """One ``Solution`` in the whole problem's indices: counts, unmet and short mapped back,
    stage objectives and bounds summed (their status the worst part's), work added up."""
    merged = Solution(status="OPTIMAL", wall_s=wall_s)
    stages: dict[str, StageResult] = {}
    firsts: list[float] = []
    for part, solution in zip(parts, solutions, strict=True):
        merged.counts.update({part.options[o]: n for o, n in solution.counts.items()})
        merged.unmet_rps.update(
            {(part.workloads[w], source): v for (w, source), v in solution.unmet_rps.items()}
        )
        merged.short.update({part.workloads[w]: n for w, n in solution.short.items()})
        merged.work_s += solution.work_s
        merged.status = _worse(merged.status, solution.status)
        if solution.first_solution_s is not None:
            firsts.append(solution.first_solution_s)
        for stage in solution.stages:
            found = stages.get(stage.name)
            if found is None:
                stages[stage.name] = dataclasses.replace(stage)
                continue
            found.status = _worse(found.status, stage.status)
            found.objective += stage.objective
            found.bound += stage.bound
            found.wall_s += stage.wall_s
            found.windows += stage.windows
    merged.stages = list(stages.values())
    merged.first_solution_s = max(firsts) if firsts else None
    return merged


_RANK = {"OPTIMAL": 0, "FEASIBLE": 1}


def _worse(a: str, b: str) -> str:
    return a if _RANK.get(a, 2) >= _RANK.get(b, 2) else b


__all__ = ["MIN_PART_SHARE", "Part", "Restricted", "by_site", "merge", "part_settings", "split"]
