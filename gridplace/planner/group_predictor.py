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

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from gridplace.planner.compile_cache import CompileView
from gridplace.planner.options import (
    Config,
    GroupPredictions,
    GroupTable,
    IntArray,
    PoolGrid,
    PredictGroups,
)
from gridplace.planner.ports import OptionPrediction, OptionPredictor, PredictionQuery
from gridplace.planner.problem import Queueing
from gridplace.planner.replica_answers import ReplicaAnswers, answers_at_budgets
from gridplace.planner.rules import Reason
from gridplace.specs import InferenceWorkload, ModelArchitectureSpec
from gridplace.specs.workload import ServiceLevel

# (rule id, reason) of the first compile-time rule a prediction breaks (``compile``).
RuleCheck = Callable[[OptionPrediction, ServiceLevel, float, str], tuple[str, Reason] | None]
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
        self, predictor: OptionPredictor, grid: PoolGrid, view: CompileView, check: RuleCheck
    ) -> None:
        self._predictor = predictor
        self._prepare: Prepare | None = getattr(predictor, "prepare", None)
        self._grid = grid
        self._view = view
        self._check = check
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
        group's class row, and the configurations it leaves to the budget answered together."""
        if self._prepare is None:
            return [self._predict_one(asked, pool, budget, configs) for pool, budget in groups]
        labels = [config.label for config in configs]
        rows = [self._class_row(asked, pool, budget, configs, labels) for pool, budget in groups]
        pairs = [
            (answers, budget_ms)
            for (_, budget_ms), row in zip(groups, rows, strict=True)
            for answers in row.searched
        ]
        found = iter(answers_at_budgets(pairs))
        checked: dict[tuple[int, int, float], tuple[str, Reason] | None] = {}
        return [
            self._group(asked, budget_ms, labels, row, found, checked)
            for (_, budget_ms), row in zip(groups, rows, strict=True)
        ]

    def _group(
        self,
        asked: _Asked,
        budget_ms: float,
        labels: list[str],
        row: _ClassRow,
        found: Iterator[OptionPrediction],
        checked: dict[tuple[int, int, float], tuple[str, Reason] | None],
    ) -> GroupPredictions:
        """One group's answer: its class row with the budget's configurations filled in (their
        answers from ``found``, in order; verdicts checked once per answer and budget)."""
        values, ok = row.values.copy(), row.ok.copy()
        failures, queueing = list(row.failures), list(row.queueing)
        for c in row.varying:
            prediction = row.fixed[c]
            if prediction is None:
                prediction = next(found)
            key = (id(prediction), c, budget_ms)
            if key in checked:
                failure = checked[key]
            else:
                slo = asked.workload.spec.slo
                failure = checked[key] = self._check(prediction, slo, budget_ms, labels[c])
            values[:, c] = _figures(prediction)
            ok[c] = failure is None
            failures[c] = failure
            queueing[c] = prediction.queueing
        return GroupPredictions(
            ok=ok, prefill_ms=values[0], itl_ms=values[1], capacity_rps=values[2],
            vram_gib=values[3], failures=tuple(failures), queueing=tuple(queueing),
        )  # fmt: skip

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
            answers = self._answers_of(asked, first, configs)
            found = rows[key] = _ClassRow(len(configs))
            for c, (item, label) in enumerate(zip(answers, labels, strict=True)):
                if item is not None:
                    found.fix(c, item, self._fixed_verdict(asked, item, budget_ms, label))
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
        row = _ClassRow(len(configs))
        row.varying = [c for c, config in enumerate(configs) if config.tensor_parallel <= gpus]
        found = (
            self._predictor(self._query(asked, first, budget_ms, configs[c])) for c in row.varying
        )
        labels = [config.label for config in configs]
        return self._group(asked, budget_ms, labels, row, found, {})


class _Varies:
    """A verdict that depends on the TTFT budget."""


_VARIES = _Varies()
# A budget this much further than the one asked: a verdict the same at both reads no budget.
_FAR_MS = 1e6


def _figures(prediction: OptionPrediction) -> tuple[float, float, float, float]:
    """A prediction's figures in ``GroupPredictions``' order."""
    p = prediction
    return (p.prefill_ms, p.itl_ms, p.capacity_rps, p.vram_gib)


class _ClassRow:
    """A node class's answers for one workload kind and SLO: the figures and verdicts of the
    configurations no TTFT budget changes (zeros, not ok, for a TP too wide for its nodes), and
    which configurations each budget fills in (``varying``), and the answers of those a budget
    changes (``searched``, in order)."""

    def __init__(self, width: int) -> None:
        self.values = np.zeros((4, width), dtype=np.float64)  # prefill, ITL, capacity, VRAM
        self.ok = np.zeros(width, dtype=bool)
        self.failures: list[tuple[str, Reason] | None] = [None] * width
        self.queueing: list[Queueing | None] = [None] * width
        self.fixed: list[OptionPrediction | None] = [None] * width
        self.varying: list[int] = []
        self.searched: list[ReplicaAnswers] = []

    def fix(
        self, c: int, answers: ReplicaAnswers, verdict: tuple[str, Reason] | _Varies | None
    ) -> None:
        """Enter configuration ``c``'s answers, with its verdict if no budget changes it."""
        prediction = answers.fixed
        if prediction is None:
            self.varying.append(c)
            self.searched.append(answers)
            return
        self.fixed[c] = prediction
        if isinstance(verdict, _Varies):
            self.varying.append(c)
            return
        self.values[:, c] = _figures(prediction)
        self.ok[c] = verdict is None
        self.failures[c] = verdict
        self.queueing[c] = prediction.queueing


@dataclass(frozen=True)
class _Asked:
    """What one workload asks: its kind, and the workload itself (its SLO, its query's fields)."""

    kind: tuple[object, ...]
    workload: InferenceWorkload
    model_id: str
    model: ModelArchitectureSpec


__all__ = ["GroupPredictor", "KindTable", "PredictGroups", "RuleCheck"]
