"""The placement model's objectives, minimized in stages in this order (``stages``): unmet
demand (weighted by priority; replicas short of replicas.min and capacity uncovered after a node
loss with it), cost per hour, replicas moved from the previous plan, preference (precision rank,
then ITL and TTFT as per-mille of their targets).

Each objective is flattened to proto terms once (``flat_terms``): the stages set it as the
model's objective several times, and windows evaluate it on every incumbent, which flattened a
22,944-term sum each time at 10,000 x 1,000."""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ortools.sat.python import cp_model, cp_model_helper

from gridplace.planner.problem import Option, Problem

if TYPE_CHECKING:
    from gridplace.planner.model import PlacementModel

COST_SCALE = 10_000  # USD/hour -> integer 1e-4 USD/hour
SHORT_PENALTY = 1000  # per missing replica, x priority, relative to 1 milli-rps unmet
UNMET_WEIGHT = 2  # a milli-request/s of unmet demand outweighs one uncovered after a node loss
# A moved replica counts this much in the moves stage, and one started on a node that holds its
# weights (a standby of the previous plan, or reported cached) earns 1 back: its start skips the
# download, so a move to a warm node costs half a move to a cold one.
MOVE_WEIGHT = 2
FLAT_CACHE_SIZE = 64  # expressions kept flattened: the stages' objectives, goals, tie-breaks


@dataclass(frozen=True)
class FlatTerms:
    """A linear expression as CP-SAT's ``minimize`` writes it into the proto: variable indices,
    coefficients and the constant offset."""

    refs: tuple[int, ...]
    coeffs: tuple[int, ...]
    offset: int

    def value(self, values: Mapping[int, int]) -> int:
        """The expression's value where variable ``i`` (proto index) is ``values[i]``."""
        return self.offset + sum(c * values[r] for r, c in zip(self.refs, self.coeffs, strict=True))


# id(expression) -> (the expression, kept alive so that its id is not reused; its terms)
_FLAT: OrderedDict[int, tuple[object, FlatTerms]] = OrderedDict()


def flat_terms(expression: cp_model.LinearExprT) -> FlatTerms:
    """``expression``'s terms, flattened on first use (expressions are immutable)."""
    cached = _FLAT.get(id(expression))
    if cached is not None and cached[0] is expression:
        _FLAT.move_to_end(id(expression))
        return cached[1]
    if not isinstance(expression, cp_model.LinearExpr):  # a constant
        terms = FlatTerms((), (), int(expression))
    else:
        flat = cp_model_helper.FlatIntExpr(expression)
        terms = FlatTerms(tuple(v.index for v in flat.vars), tuple(flat.coeffs), flat.offset)
    _FLAT[id(expression)] = (expression, terms)
    if len(_FLAT) > FLAT_CACHE_SIZE:
        _FLAT.popitem(last=False)
    return terms


class StagedModel(cp_model.CpModel):
    """A CP-SAT model whose integer objectives are set from their cached flat terms: the same
    proto as ``CpModel.minimize`` writes, without flattening the sum again."""

    def minimize(self, obj: cp_model.ObjLinearExprT) -> None:
        if not isinstance(obj, (int, cp_model.LinearExpr)) or not _is_integer(obj):
            super().minimize(obj)
            return
        terms = flat_terms(obj)
        self.clear_objective()  # type: ignore[no-untyped-call]
        objective = self.proto.objective
        objective.vars.extend(terms.refs)
        objective.coeffs.extend(terms.coeffs)
        objective.offset = terms.offset
        objective.scaling_factor = 1.0


def _is_integer(expression: int | cp_model.LinearExpr) -> bool:
    if isinstance(expression, int):
        return True
    cached = _FLAT.get(id(expression))
    return (cached is not None and cached[0] is expression) or bool(expression.is_integer())


def _sum(terms: Iterable[cp_model.LinearExprT]) -> cp_model.LinearExpr:
    return cp_model.LinearExpr.sum(list(terms))


def weighted(
    variables: dict[int, cp_model.IntVar], options: Iterable[Option], weights: Iterable[int]
) -> cp_model.LinearExpr:
    """sum of variables[o.index] x weight, in one call (not one product expression per term:
    the same rows, built several times faster)."""
    return cp_model.LinearExpr.weighted_sum([variables[o.index] for o in options], list(weights))


def scaled_cost(option: Option) -> int:
    """A replica's cost per hour in integer units of ``COST_SCALE``, rounded up."""
    return math.ceil(option.cost_per_hour * COST_SCALE)


def _preference(problem: Problem, option: Option) -> int:
    workload = problem.workloads[option.workload]
    mean_ttft = sum(option.ttft_ms.values()) / len(option.ttft_ms)
    return (
        option.precision_rank * 1000
        + round(1000 * option.itl_ms / workload.itl_slo_ms) // 10
        + round(1000 * mean_ttft / workload.ttft_slo_ms) // 10
    )


def _warm_starts(pm: PlacementModel, previous: dict[int, int]) -> None:
    """warm_starts[w,p] <= the replicas of w added in pool p (x - previous + moved out, >= 0
    whatever moved), at most the pool's nodes holding w's weights: the warm starts a replan may
    count."""
    problem = pm.problem
    if not problem.warm:  # no node holds any workload's weights (a first plan)
        return
    by_pair: dict[tuple[int, int], list[Option]] = defaultdict(list)
    for option in problem.options:
        by_pair[(option.workload, option.pool)].append(option)
    for (workload, pool), options in sorted(by_pair.items()):
        warm = problem.warm_nodes(workload, problem.pools[pool])
        if not warm:
            continue
        var = pm.model.new_int_var(0, warm, f"warm_starts[{workload},{pool}]")
        added = _sum(
            [pm.x[o.index] - previous.get(o.index, 0) for o in options]
            + [pm.moved[o.index] for o in options if o.index in pm.moved]
        )
        pm.model.add(var <= added).with_name(f"warm-starts[workload={workload},pool={pool}]")
        pm.warm_starts[(workload, pool)] = var


def build_objectives(pm: PlacementModel) -> None:
    problem = pm.problem
    unmet_terms = (
        [
            UNMET_WEIGHT * problem.workloads[w].priority * var
            for (w, _), var in sorted(pm.unmet.items())
        ]
        + [
            UNMET_WEIGHT * problem.workloads[w].priority * SHORT_PENALTY * var
            for w, var in sorted(pm.short.items())
        ]
        + [problem.workloads[w].priority * var for w, var in sorted(pm.uncovered.items())]
    )
    pm.objectives.append(("unmet-demand", _sum(unmet_terms)))
    options = problem.options
    pm.objectives.append(("cost", weighted(pm.x, options, map(scaled_cost, options))))
    previous: dict[int, int] = defaultdict(int)
    for replica in problem.previous:
        if replica.option is not None:
            previous[replica.option] += 1
    for option, count in sorted(previous.items()):
        var = pm.model.new_int_var(0, count, f"moved[{option}]")
        pm.model.add(var >= count - pm.x[option]).with_name(f"moves[option={option}]")
        pm.moved[option] = var
    _warm_starts(pm, previous)
    moves = [MOVE_WEIGHT * var for var in pm.moved.values()]
    pm.objectives.append(("moves", _sum([*moves, *(-v for v in pm.warm_starts.values())])))
    preference = [_preference(problem, o) for o in options]
    pm.objectives.append(("preference", weighted(pm.x, options, preference)))
