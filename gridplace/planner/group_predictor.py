"""Compile's questions to the performance model, asked once per workload kind and group of pools,
and the answers of one kind stacked so that a workload reads all of its groups with one gather.

A *kind* is what a workload asks of a pool (model, engine, engine options, precisions, ITL
target, token counts); workloads of one kind ask the same question of a group with the same
signature, GPU figures and TTFT budget, so on generated grids 1,000 workloads come down to a few
dozen kinds. Each answer (``options.GroupPredictions``) comes from the ``CompileView`` (the
cache across plans) or the predictor, and is appended to its kind's ``KindTable``: a workload's
groups are then rows of the table (``options.GroupTable``), not a stack built per workload.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

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
from gridplace.planner.rules import Reason
from gridplace.specs import InferenceWorkload, ModelArchitectureSpec
from gridplace.specs.workload import ServiceLevel

# (rule id, reason) of the first compile-time rule a prediction breaks (``compile``).
RuleCheck = Callable[[OptionPrediction, ServiceLevel, float, str], tuple[str, Reason] | None]


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
    """Asks the predictor about groups of pools, once per question across all workloads."""

    def __init__(
        self, predictor: OptionPredictor, grid: PoolGrid, view: CompileView, check: RuleCheck
    ) -> None:
        self._predictor = predictor
        self._grid = grid
        self._view = view
        self._check = check
        self._tables: dict[tuple[object, ...], KindTable] = {}

    @staticmethod
    def kind_of(
        workload: InferenceWorkload, model_id: str, model: ModelArchitectureSpec
    ) -> tuple[object, ...]:
        """What ``workload`` asks of a pool: workloads of one kind get the same answers."""
        spec = workload.spec
        return (
            model_id, id(model), spec.engine, spec.engine_options, tuple(spec.precisions),
            spec.slo.itl_ms, spec.traffic.prompt_tokens, spec.traffic.output_tokens,
        )  # fmt: skip

    def for_workload(
        self, workload: InferenceWorkload, model_id: str, model: ModelArchitectureSpec
    ) -> PredictGroups:
        """``predict(first_pools, budgets_ms, configs)``: the answers for groups of pools, each
        named by its first pool and TTFT budget, for ``workload``'s kind."""
        spec = workload.spec
        kind = self.kind_of(workload, model_id, model)
        question = self._view.question(spec, model_id, model)
        grid = self._grid

        def predict(first: IntArray, budgets: list[float], configs: list[Config]) -> GroupTable:
            table = self._tables.get(kind)
            if table is None:
                table = self._tables[kind] = KindTable(len(configs))
            signature = grid.signature[first].tolist()
            rows: list[int] = []
            for pool, sig, budget_ms in zip(first.tolist(), signature, budgets, strict=True):
                key = (sig, grid.gpu_variant[pool], budget_ms)
                row = table.rows.get(key)
                if row is None:
                    ask = (pool, budget_ms, configs, workload, model_id, model)
                    answer = self._view.answer(
                        question, pool, budget_ms, partial(self._predict, *ask)
                    )
                    row = table.rows[key] = table.add(answer)
                rows.append(row)
            return table.gather(np.array(rows, dtype=np.int64))

        return predict

    def _predict(
        self,
        first: int,
        budget_ms: float,
        configs: list[Config],
        workload: InferenceWorkload,
        model_id: str,
        model: ModelArchitectureSpec,
    ) -> GroupPredictions:
        spec = workload.spec
        pool = self._grid.pools[first]
        values: list[tuple[float, float, float, float]] = []
        ok: list[bool] = []
        failures: list[tuple[str, Reason] | None] = []
        queueing: list[Queueing | None] = []
        for config in configs:
            if config.tensor_parallel > pool.gpus_per_node:
                values.append((0.0, 0.0, 0.0, 0.0))
                ok.append(False)
                failures.append(None)
                queueing.append(None)
                continue
            prediction = self._predictor(
                PredictionQuery(
                    model=model,
                    model_id=model_id,
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
            )
            failure = self._check(prediction, spec.slo, budget_ms, config.label)
            values.append(
                (
                    prediction.prefill_ms,
                    prediction.itl_ms,
                    prediction.capacity_rps,
                    prediction.vram_gib,
                )
            )
            ok.append(failure is None)
            failures.append(failure)
            queueing.append(prediction.queueing)
        table = np.array(values, dtype=np.float64).reshape(len(configs), 4)
        return GroupPredictions(
            ok=np.array(ok, dtype=bool),
            prefill_ms=table[:, 0].copy(),
            itl_ms=table[:, 1].copy(),
            capacity_rps=table[:, 2].copy(),
            vram_gib=table[:, 3].copy(),
            failures=tuple(failures),
            queueing=tuple(queueing),
        )


__all__ = ["GroupPredictor", "KindTable", "PredictGroups", "RuleCheck"]
