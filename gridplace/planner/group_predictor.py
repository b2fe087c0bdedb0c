"""Compile's questions to the performance model, asked once per workload kind and group of pools,
and the answers of one kind stacked so that a workload reads all of its groups with one gather.

A *kind* is what a workload asks of a pool (model, engine, engine options, precisions, ITL and TTFT
targets, token counts: a ``ttft-no-load`` verdict names the target); workloads of one kind ask the
same question of a group with the same signature, GPU figures and TTFT budget, so on generated grids
1,000 workloads come down to a few dozen kinds. Each answer (``options.GroupPredictions``) comes
from the ``CompileView`` (the cache across plans) or the predictor, and is appended to its kind's
``KindTable``: a workload's groups are then rows of the table (``options.GroupTable``), not a stack
built per workload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridplace.planner.compile_cache import CompileView
from gridplace.planner.options import (
    Config,
    FloatArray,
    GroupPredictions,
    GroupTable,
    IntArray,
    PoolGrid,
    PredictGroups,
)
from gridplace.planner.ports import OptionPrediction, OptionPredictor, PredictionQuery
from gridplace.planner.problem import Queueing
from gridplace.planner.replica_answers import (
    BudgetColumns,
    ReplicaAnswers,
    answers_at_budgets,
    figures_of,
)
from gridplace.planner.rules import Reason
from gridplace.specs import InferenceWorkload, ModelArchitectureSpec
from gridplace.specs.workload import ServiceLevel

# (rule id, reason) of the first compile-time rule a prediction breaks (``compile``).
RuleCheck = Callable[[OptionPrediction, ServiceLevel, float, str], tuple[str, Reason] | None]
# Which booked answers (supported, fitting, a positive rate) of these ITLs meet ``RuleCheck``'s
# rules under an SLO, at any budget (``compile``); None: each checked by ``RuleCheck``.
BookedCheck = Callable[[FloatArray, ServiceLevel], npt.NDArray[np.bool_]]
# A query's answers at every TTFT budget (``predictor.ModelPredictor.prepare``).
Prepare = Callable[[PredictionQuery], ReplicaAnswers]


class KindTable:
    """The answers one workload kind got, row by row: a row's rule verdicts and figures per
    configuration, in arrays that grow by doubling."""

    def __init__(self, width: int) -> None:
        self.rows: dict[tuple[int, int, float], int] = {}  # (signature, GPU figures, budget)
        self.items: list[GroupPredictions] = []
        self._ok = np.zeros((16, width), dtype=bool)
        self._values = np.zeros((4, 16, width), dtype=np.float64)

    def add(self, answer: GroupPredictions) -> int:
        """Append ``answer``; its row number."""
        row = len(self.items)
        if row == len(self._ok):
            self._ok = np.concatenate([self._ok, np.zeros_like(self._ok)])
            self._values = np.concatenate([self._values, np.zeros_like(self._values)], axis=1)
        self._ok[row] = answer.ok
        for axis, column in enumerate(
            (answer.prefill_ms, answer.itl_ms, answer.capacity_rps, answer.vram_gib)
        ):
            self._values[axis, row] = column
        self.items.append(answer)
        return row

    def gather(self, rows: IntArray) -> GroupTable:
        """The answers of ``rows``, in that order (groups x configurations)."""
        prefill, itl, capacity, vram = self._values[:, rows]
        return GroupTable(
            ok=self._ok[rows],
            prefill_ms=prefill,
            itl_ms=itl,
            capacity_rps=capacity,
            vram_gib=vram,
            answers=self.items,
            rows=rows,
        )


class GroupPredictor:
    """Asks the predictor about groups of pools, once per question across all workloads: the
    new questions of one call together (``replica_answers.answers_at_budgets``) when the
    predictor can ``prepare`` a query's answers for every budget, else one query at a time."""

    def __init__(
        self,
        predictor: OptionPredictor,
        grid: PoolGrid,
        view: CompileView,
        check: RuleCheck,
        check_booked: BookedCheck | None = None,
    ) -> None:
        self._predictor = predictor
        self._prepare: Prepare | None = getattr(predictor, "prepare", None)
        self._grid = grid
        self._view = view
        self._check = check
        self._check_booked = check_booked
        self._tables: dict[tuple[object, ...], KindTable] = {}
        # Per (kind, signature, GPU figures): each configuration's answers (None: TP too wide).
        self._answers: dict[tuple[object, ...], list[ReplicaAnswers | None]] = {}
        # Per (kind, SLO): per (signature, GPU figures) the class's budget-free answers.
        self._rows: dict[tuple[object, ...], dict[tuple[int, int], _ClassRow]] = {}

    @staticmethod
    def kind_of(
        workload: InferenceWorkload, model_id: str, model: ModelArchitectureSpec
    ) -> tuple[object, ...]:
        """What ``workload`` asks of a pool: workloads of one kind get the same answers and
        verdicts (the TTFT target too: one budget left of two targets is two verdicts)."""
        spec = workload.spec
        return (
            model_id, id(model), spec.engine, spec.engine_options, tuple(spec.precisions),
            spec.slo.itl_ms, spec.slo.ttft_ms, spec.traffic.prompt_tokens,
            spec.traffic.output_tokens,
        )  # fmt: skip

    def for_workload(
        self, workload: InferenceWorkload, model_id: str, model: ModelArchitectureSpec
    ) -> PredictGroups:
        """``predict(first_pools, budgets_ms, configs)``: the answers for groups of pools, each
        named by its first pool and TTFT budget, for ``workload``'s kind."""
        asked = _Asked(self.kind_of(workload, model_id, model), workload, model_id, model)
        question = self._view.question(workload.spec, model_id, model)
        grid, view = self._grid, self._view

        def predict(first: IntArray, budgets: list[float], configs: list[Config]) -> GroupTable:
            table = self._tables.get(asked.kind)
            if table is None:
                table = self._tables[asked.kind] = KindTable(len(configs))
            rows: list[int] = []
            new: dict[tuple[int, int, float], tuple[int, float]] = {}
            waiting: list[tuple[int, tuple[int, int, float]]] = []  # (group, key) of new rows
            for pool, sig, budget_ms in zip(
                first.tolist(), grid.signature[first].tolist(), budgets, strict=True
            ):
                key = (sig, grid.gpu_variant[pool], budget_ms)
                row = table.rows.get(key)
                if row is None and key not in new:
                    cached = view.cached(question, pool, budget_ms)
                    if cached is None:
                        new[key] = (pool, budget_ms)
                    else:
                        row = table.rows[key] = table.add(cached)
                if row is None:
                    waiting.append((len(rows), key))
                rows.append(-1 if row is None else row)
            if new:
                answers = self._ask(asked, list(new.values()), configs)
                for (key, (pool, budget_ms)), answer in zip(new.items(), answers, strict=True):
                    view.keep(question, pool, budget_ms, answer)
                    table.rows[key] = table.add(answer)
                for group, key in waiting:
                    rows[group] = table.rows[key]
            return table.gather(np.array(rows, dtype=np.int64))

        return predict

    def _ask(
        self, asked: _Asked, groups: list[tuple[int, float]], configs: list[Config]
    ) -> list[GroupPredictions]:
        """The answers for ``groups`` (first pool, TTFT budget) of one workload kind: each
        group's class row, and the configurations it leaves to the budget answered together
        as columns (``replica_answers.answers_at_budgets``)."""
        if self._prepare is None:
            return [self._predict_one(asked, pool, budget, configs) for pool, budget in groups]
        labels = [config.label for config in configs]
        rows = [self._class_row(asked, pool, budget, configs, labels) for pool, budget in groups]
        pairs = [
            (answers, budget_ms)
            for (_, budget_ms), row in zip(groups, rows, strict=True)
            for answers in row.searched
        ]
        columns = answers_at_budgets(pairs)
        passed = columns.booked.copy()  # verdicts on the booked answers' columns
        if self._check_booked is None:
            passed[:] = False  # every answer checked one by one
        elif len(pairs):
            passed &= self._check_booked(columns.figures[:, 1], asked.workload.spec.slo)
        checked: dict[tuple[int, int, float], tuple[str, Reason] | None] = {}
        failing = np.flatnonzero(~passed)  # searched answers checked one by one, ascending
        bounds = np.cumsum([0, *(len(row.searched) for row in rows)])
        cuts = np.searchsorted(failing, bounds).tolist()
        found: list[GroupPredictions] = []
        for (_, budget_ms), row, start, cut, next_cut in zip(
            groups, rows, bounds.tolist(), cuts, cuts[1:], strict=False
        ):
            at = _Verdicts(columns, passed, start, failing[cut:next_cut].tolist(), checked)
            found.append(self._group(asked, budget_ms, labels, row, at))
        return found

    def _group(
        self, asked: _Asked, budget_ms: float, labels: list[str], row: _ClassRow, at: _Verdicts
    ) -> GroupPredictions:
        """One group's answer: its class row with the budget's configurations filled in (the
        searched ones from ``at``'s columns; a verdict checked one by one only where the
        columns' does not pass, once per answer and budget)."""
        values, ok = row.values.copy(), row.ok.copy()
        failures = list(row.failures)
        for c in row.budgeted:
            failure = self._verdict(asked, row.fixed[c], c, budget_ms, labels[c], at.checked)
            ok[c], failures[c] = failure is None, failure
        booked = np.zeros(len(ok), dtype=bool)
        end = at.start + len(row.searched)
        if end > at.start:
            cols, columns = row.searched_at, at.columns
            values[:, cols] = columns.figures[at.start : end].T
            booked[cols] = columns.booked[at.start : end]
            ok[cols] = at.passed[at.start : end]
            for i in at.failing:
                c = int(cols[i - at.start])
                prediction = columns.prediction(i)
                memo = at.checked if columns.known[i] is not None else None  # kept alive: by id
                failure = self._verdict(asked, prediction, c, budget_ms, labels[c], memo)
                ok[c], failures[c] = failure is None, failure
        return GroupPredictions(
            ok=ok, prefill_ms=values[0], itl_ms=values[1], capacity_rps=values[2],
            vram_gib=values[3], failures=tuple(failures), queueing=row.queueing, booked=booked,
        )  # fmt: skip

    def _verdict(
        self,
        asked: _Asked,
        prediction: OptionPrediction | None,
        c: int,
        budget_ms: float,
        label: str,
        checked: dict[tuple[int, int, float], tuple[str, Reason] | None] | None,
    ) -> tuple[str, Reason] | None:
        """The rules' verdict on one prediction at a budget (memoized in ``checked`` by the
        prediction's identity, for objects that outlive it)."""
        assert prediction is not None
        key = (id(prediction), c, budget_ms)
        if checked is not None and key in checked:
            return checked[key]
        failure = self._check(prediction, asked.workload.spec.slo, budget_ms, label)
        if checked is not None:
            checked[key] = failure
        return failure

    def _class_row(
        self, asked: _Asked, first: int, budget_ms: float, configs: list[Config], labels: list[str]
    ) -> _ClassRow:
        """The answers and verdicts no TTFT budget changes, for the class of pool ``first``
        (kept per workload kind and SLO; built at the first budget asked)."""
        grid = self._grid
        rows = self._rows.setdefault((asked.kind, asked.workload.spec.slo), {})
        key = (int(grid.signature[first]), grid.gpu_variant[first])
        found = rows.get(key)
        if found is None:
            found = rows[key] = _ClassRow(len(configs))
            found.fill(
                self._answers_of(asked, first, configs),
                lambda item, c: self._fixed_verdict(asked, item, budget_ms, labels[c]),
            )
        return found

    def _fixed_verdict(
        self, asked: _Asked, answers: ReplicaAnswers, budget_ms: float, label: str
    ) -> tuple[str, Reason] | _Varies | None:
        """The verdict on a budget-free answer, if the rules give it at a budget far from this
        one too (a rejection by rules that read no budget); else ``_VARIES``."""
        if answers.fixed is None:
            return _VARIES
        slo = asked.workload.spec.slo
        verdict = self._check(answers.fixed, slo, budget_ms, label)
        if verdict != self._check(answers.fixed, slo, budget_ms + _FAR_MS, label):
            return _VARIES
        return verdict

    def _answers_of(
        self, asked: _Asked, first: int, configs: list[Config]
    ) -> list[ReplicaAnswers | None]:
        """Each configuration's answers on the node class of pool ``first``."""
        grid = self._grid
        key = (asked.kind, int(grid.signature[first]), grid.gpu_variant[first])
        found = self._answers.get(key)
        if found is None:
            assert self._prepare is not None
            gpus = grid.pools[first].gpus_per_node
            found = self._answers[key] = [
                self._prepare(self._query(asked, first, 0.0, config))
                if config.tensor_parallel <= gpus
                else None
                for config in configs
            ]
        return found

    def _query(
        self, asked: _Asked, first: int, budget_ms: float, config: Config
    ) -> PredictionQuery:
        spec = asked.workload.spec
        pool = self._grid.pools[first]
        return PredictionQuery(
            model=asked.model,
            model_id=asked.model_id,
            gpu=self._grid.pool_gpus[first],
            gpu_id=pool.gpu_model,
            precision=config.precision,
            engine=spec.engine,
            tensor_parallel=config.tensor_parallel,
            share=config.share,
            interconnect=pool.interconnect,
            throttle_ratio=pool.throttle_ratio,
            ttft_budget_ms=budget_ms,
            itl_slo_ms=spec.slo.itl_ms,
            prompt_tokens=spec.traffic.prompt_tokens,
            output_tokens=spec.traffic.output_tokens,
            engine_options=spec.engine_options,
        )

    def _predict_one(
        self, asked: _Asked, first: int, budget_ms: float, configs: list[Config]
    ) -> GroupPredictions:
        """One group's answers from a predictor without ``prepare``, one query each."""
        gpus = self._grid.pools[first].gpus_per_node
        values = np.zeros((4, len(configs)), dtype=np.float64)
        ok = np.zeros(len(configs), dtype=bool)
        failures: list[tuple[str, Reason] | None] = [None] * len(configs)
        queueing: list[Queueing | None] = [None] * len(configs)
        for c, config in enumerate(configs):
            if config.tensor_parallel <= gpus:
                prediction = self._predictor(self._query(asked, first, budget_ms, config))
                failure = self._verdict(asked, prediction, c, budget_ms, config.label, None)
                values[:, c] = figures_of(prediction)
                ok[c], failures[c], queueing[c] = failure is None, failure, prediction.queueing
        return GroupPredictions(
            ok=ok, prefill_ms=values[0], itl_ms=values[1], capacity_rps=values[2],
            vram_gib=values[3], failures=tuple(failures), queueing=tuple(queueing),
        )  # fmt: skip


class _Varies:
    """A verdict that depends on the TTFT budget."""


_VARIES = _Varies()
# A budget this much further than the one asked: a verdict the same at both reads no budget.
_FAR_MS = 1e6


class _ClassRow:
    """A node class's answers for one workload kind and SLO: the figures and verdicts of the
    configurations no TTFT budget changes (zeros, not ok, for a TP too wide for its nodes),
    the budget-free answers whose verdict a budget decides (``budgeted``), and the answers a
    budget changes (``searched``, at configurations ``searched_at``). ``queueing`` holds the
    searched answers' shared queueing figures (``GroupPredictions.booked`` reads them); a
    budget-free answer has none."""

    def __init__(self, width: int) -> None:
        self.values = np.zeros((4, width), dtype=np.float64)  # prefill, ITL, capacity, VRAM
        self.ok = np.zeros(width, dtype=bool)
        self.failures: list[tuple[str, Reason] | None] = [None] * width
        self.fixed: list[OptionPrediction | None] = [None] * width
        self.budgeted: list[int] = []
        self.searched: list[ReplicaAnswers] = []
        self.searched_at: IntArray = np.zeros(0, dtype=np.int64)
        self.queueing: tuple[Queueing | None, ...] = ()

    def fill(
        self,
        answers: list[ReplicaAnswers | None],
        verdicts: Callable[[ReplicaAnswers, int], tuple[str, Reason] | _Varies | None],
    ) -> None:
        """Enter each configuration's answers (None: TP too wide), with their verdicts where
        no budget changes them."""
        queueing: list[Queueing | None] = [None] * len(answers)
        searched_at: list[int] = []
        for c, item in enumerate(answers):
            if item is None:
                continue
            prediction = item.fixed
            if prediction is None:
                self.searched.append(item)
                searched_at.append(c)
                queueing[c] = item.queueing
                continue
            assert prediction.queueing is None  # budget-free answers carry no load
            self.fixed[c] = prediction
            self.values[:, c] = figures_of(prediction)
            verdict = verdicts(item, c)
            if isinstance(verdict, _Varies):
                self.budgeted.append(c)
            else:
                self.ok[c], self.failures[c] = verdict is None, verdict
        self.searched_at = np.array(searched_at, dtype=np.int64)
        self.queueing = tuple(queueing)


@dataclass(frozen=True)
class _Verdicts:
    """One ``_ask``'s columns, which of their verdicts pass, where a group's searched answers
    start in them and which of them fail, and the verdicts checked one by one so far."""

    columns: BudgetColumns
    passed: npt.NDArray[np.bool_]
    start: int
    failing: list[int]  # the group's answers whose column verdict does not pass
    checked: dict[tuple[int, int, float], tuple[str, Reason] | None]


@dataclass(frozen=True)
class _Asked:
    """What one workload asks: its kind, and the workload itself (its SLO, its query's fields)."""

    kind: tuple[object, ...]
    workload: InferenceWorkload
    model_id: str
    model: ModelArchitectureSpec


__all__ = ["BookedCheck", "GroupPredictor", "KindTable", "PredictGroups", "RuleCheck"]
