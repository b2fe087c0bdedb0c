"""What the performance model answers about one replica configuration under one ITL target and
request size, at any TTFT budget: the part of a prediction no budget changes, computed once, and
the answers by budget (one at a time, or many pairs in one numpy pass for compile, as columns:
``BudgetColumns``, objects built only where read).

Owns: turning a replica model's figures into compile's ``OptionPrediction`` (support, fit, the
capacity inside the SLO, the VRAM booked at that load, the queueing figures). ``predictor``
builds and memoizes the replica models and these answers; ``group_predictor`` asks for many
budgets at once. The batched path gives the scalar path's numbers bit for bit
(``perfmodel.capacity_many``; ``tests/planner/test_replica_answers.py`` compares them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridplace.planner.perfmodel import Predictor as ReplicaModel
from gridplace.planner.perfmodel.capacity import Capacity, LoadedReplica, loaded_replica
from gridplace.planner.perfmodel.capacity_many import (
    FloatArray,
    QueueRow,
    queue_row,
    rates_at_budgets,
)
from gridplace.planner.perfmodel.engines import GIB
from gridplace.planner.perfmodel.results import NotSupported, Prediction
from gridplace.planner.ports import OptionPrediction
from gridplace.planner.problem import Queueing
from gridplace.planner.recalibrate import Correction, corrected


class CorrectedSteps:
    """A replica model whose prefill and decode steps' GPU parts are multiplied by a learned
    correction."""

    def __init__(self, replica: ReplicaModel, correction: Correction) -> None:
        self._replica = replica
        self._prefill = correction.prefill
        self._decode = correction.decode

    @property
    def step_overhead_ms(self) -> float:
        return self._replica.step_overhead_ms

    @property
    def prefill_chunk_tokens(self) -> int:
        return self._replica.prefill_chunk_tokens

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float:
        raw = self._replica.prefill_ms(batch, prompt_tokens)
        return corrected(raw, self.step_overhead_ms, self._prefill)

    def decode_ms(self, batch: int, context_tokens: int) -> float:
        raw = self._replica.decode_ms(batch, context_tokens)
        return corrected(raw, self.step_overhead_ms, self._decode)

    def max_sequences(self, tokens_per_sequence: int) -> int:
        return self._replica.max_sequences(tokens_per_sequence)


@dataclass(frozen=True)
class _Sizes:
    prompt_tokens: int
    output_tokens: int


class ReplicaAnswers:
    """One replica configuration's answers to one ITL target and request size, by TTFT budget
    (ms left after the network, ``core.ttft_budget_ms``); memoized per budget."""

    def __init__(
        self,
        replica: ReplicaModel | None,
        itl_slo_ms: float,
        sizes: tuple[int, int],  # prompt, output tokens
        correction: Correction | None = None,
        fixed: OptionPrediction | None = None,
    ) -> None:
        self.by_budget: dict[float, OptionPrediction] = {}
        self.loaded: LoadedReplica | None = None  # what the budgets share, when they matter
        self.queue_row: QueueRow = (0.0, 0.0, 0.0, 0.0, 0.0)  # ``loaded``'s, for the search
        # What a positive rate books, for the search: ITL (the loaded step), weights, reserve,
        # KV bytes per token, tokens per sequence, memory per GPU (``booked``'s figures).
        self.booking_row = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        # The queueing figures every booked answer shares (booked at each one's own TTFT).
        self.queueing = Queueing(0.0, 0.0, 0.0, 0.0)
        self._replica = replica
        self._sizes = sizes
        self._full: Prediction | None = None
        # The answer at every budget, when no budget changes it.
        self.fixed = fixed
        if fixed is None:
            assert replica is not None, "an answer without a replica model must be fixed"
            self.fixed = self._budget_free(replica, itl_slo_ms, sizes, correction)

    def _budget_free(
        self,
        replica: ReplicaModel,
        itl_slo_ms: float,
        sizes: tuple[int, int],
        correction: Correction | None,
    ) -> OptionPrediction | None:
        """The answer when no budget changes it; else None, with what the budgets share kept."""
        memory_gib = replica.gpu.memory_gib
        if replica.unsupported is not None:
            return OptionPrediction(
                False, replica.unsupported, False, 0.0, memory_gib, 0.0, 0.0, 0.0
            )
        prompt, output = sizes
        # Fits means one full-length sequence (prompt + output) fits beside the weights.
        full = replica.predict(batch=1, prompt_tokens=prompt, context_tokens=prompt + output)
        assert not isinstance(full, NotSupported)
        self._full = full
        if not full.fits:
            return OptionPrediction(True, "", False, full.vram_gib, full.memory_gib, 0.0, 0.0, 0.0)
        steps = replica if correction is None else CorrectedSteps(replica, correction)
        loaded = loaded_replica(steps, itl_slo_ms, _Sizes(prompt, output))
        if isinstance(loaded, Capacity):
            return self.from_capacity(loaded)
        self.loaded = loaded
        self.queue_row = queue_row(loaded)
        memory = replica.memory
        self.booking_row = (
            loaded.step_ms, memory.weights_gib, memory.reserve_gib, memory.kv_bytes_per_token,
            float(max(prompt, prompt + output)), memory.memory_gib,
        )  # fmt: skip
        self.queueing = _queueing(steps, 0.0, loaded.batch, prompt, output)
        return None

    def at(self, budget_ms: float) -> OptionPrediction:
        """The answer at one TTFT budget."""
        if self.fixed is not None:
            return self.fixed
        found = self.by_budget.get(budget_ms)
        if found is None:
            assert self.loaded is not None
            found = self.from_capacity(self.loaded.at_budget(max(budget_ms, 0.0)))
            self.by_budget[budget_ms] = found
        return found

    def from_capacity(self, capacity: Capacity) -> OptionPrediction:
        """The answer for a capacity ``loaded_replica`` or the loaded replica gave."""
        full = self._full
        assert full is not None
        if capacity.rps <= 0:
            # Report the single-stream figures: what a user compares with the SLO.
            return OptionPrediction(
                True, capacity.reason, True, full.vram_gib, full.memory_gib,
                capacity.ttft_ms or full.ttft_ms, capacity.itl_ms or full.itl_ms, 0.0,
            )  # fmt: skip
        return self.booked(capacity.rps, capacity.ttft_ms, capacity.concurrency)

    def booked(self, rps: float, ttft_ms: float, concurrency: float) -> OptionPrediction:
        """The answer at a positive rate: VRAM booked for weights + KV cache of the planned
        concurrency + reserve, and the queueing figures at that TTFT."""
        assert self.loaded is not None and self._replica is not None
        prompt, output = self._sizes
        memory = self._replica.memory
        vram_gib = memory.vram_gib(max(1, math.ceil(concurrency)), max(prompt, prompt + output))
        return OptionPrediction(
            True, "", True, min(vram_gib, memory.memory_gib), memory.memory_gib, ttft_ms,
            self.loaded.step_ms, rps, self.queueing_at(ttft_ms),
        )  # fmt: skip

    def queueing_at(self, ttft_ms: float) -> Queueing:
        """The queueing figures of the answer booked at ``ttft_ms``."""
        queue = self.queueing
        return Queueing(ttft_ms, queue.unloaded_ttft_ms, queue.service_ms, queue.unloaded_itl_ms)


@dataclass(frozen=True)
class BudgetColumns:
    """``answers.at(budget)`` for many (answers, budget) pairs, as columns: each pair's figures
    in ``OptionPrediction``'s order, and an object only where the scalar path made one (zero
    capacity); a pair ``booked`` at a positive rate is supported and fits, its ITL the loaded
    step's and its queueing figures its answers' ``queueing`` booked at its TTFT (``figures``'
    first column). ``prediction(i)`` builds pair ``i``'s object when something reads it."""

    pairs: Sequence[tuple[ReplicaAnswers, float]]
    figures: FloatArray  # pairs x 4: prefill (TTFT at the booked load), ITL, capacity, VRAM
    booked: npt.NDArray[np.bool_]
    known: list[OptionPrediction | None]  # None where booked

    def prediction(self, i: int) -> OptionPrediction:
        """Pair ``i``'s answer, the object ``answers.at(budget)`` gives."""
        known = self.known[i]
        if known is not None:
            return known
        answers = self.pairs[i][0]
        prefill, itl, rps, vram = self.figures[i].tolist()
        memory_gib = answers.booking_row[5]
        queueing = answers.queueing_at(prefill)
        return OptionPrediction(True, "", True, vram, memory_gib, prefill, itl, rps, queueing)


def answers_at_budgets(pairs: Sequence[tuple[ReplicaAnswers, float]]) -> BudgetColumns:
    """``answers.at(budget)`` for each pair as columns, each distinct pair answered once (half
    of a compile call's pairs repeat one: node classes that differ only in GPUs per node), the
    capacity searches of those inside their budgets in one numpy pass
    (``perfmodel.capacity_many``) and what a positive rate books (VRAM at its concurrency) in
    a few more."""
    slots: dict[tuple[int, float], int] = {}
    distinct: list[tuple[ReplicaAnswers, float]] = []
    where: list[int] = []
    for pair in pairs:
        key = (id(pair[0]), pair[1])
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = len(distinct)
            distinct.append(pair)
        where.append(slot)
    known: list[OptionPrediction | None] = []
    searched: list[int] = []
    for answers, budget_ms in distinct:
        loaded = answers.loaded
        if answers.fixed is None and loaded is not None and loaded.unloaded_ttft_ms <= budget_ms:
            searched.append(len(known))  # a budget > 0: the search's exits are all passed
            known.append(None)
        else:
            known.append(answers.at(budget_ms))
    figures = np.array(
        [figures_of(answer) if answer is not None else _NO_FIGURES for answer in known],
        dtype=np.float64,
    ).reshape(len(distinct), 4)
    booked = np.zeros(len(distinct), dtype=bool)
    if searched:
        _search(distinct, np.array(searched, dtype=np.intp), known, figures, booked)
    at = np.array(where, dtype=np.intp)
    return BudgetColumns(pairs, figures[at], booked[at], [known[i] for i in where])


_NO_FIGURES = (0.0, 0.0, 0.0, 0.0)


def figures_of(prediction: OptionPrediction) -> tuple[float, float, float, float]:
    """A prediction's figures in ``BudgetColumns.figures``' order."""
    p = prediction
    return (p.prefill_ms, p.itl_ms, p.capacity_rps, p.vram_gib)


def _search(
    pairs: Sequence[tuple[ReplicaAnswers, float]],
    searched: npt.NDArray[np.intp],
    known: list[OptionPrediction | None],
    figures: FloatArray,
    booked: npt.NDArray[np.bool_],
) -> None:
    """Fill the ``searched`` pairs from one vectorized capacity search: figures where the rate
    is positive (``booked``), the scalar answer where it is zero."""
    picked = [pairs[i] for i in searched.tolist()]
    budgets = np.array([budget for _, budget in picked], dtype=np.float64)
    rates = rates_at_budgets([answers.queue_row for answers, _ in picked], budgets)
    rows = np.array([answers.booking_row for answers, _ in picked], dtype=np.float64)
    step_ms, weights, reserve, kv_per_token, tokens, memory = rows.reshape(len(picked), 6).T
    # As ``booked``: max(1, ceil(concurrency)) sequences of ``tokens`` (integers below 2**53,
    # so the products are exact as Python's), then ``MemoryPlan.vram_gib``'s sums in its order.
    sequences = np.maximum(np.ceil(rates.concurrency), 1.0)
    vram = weights + sequences * tokens * kv_per_token / GIB + reserve
    positive = rates.rps > 0
    at = searched[positive]
    figures[at, 0] = rates.ttft_ms[positive]
    figures[at, 1] = step_ms[positive]
    figures[at, 2] = rates.rps[positive]
    figures[at, 3] = np.minimum(vram, memory)[positive]
    booked[at] = True
    for j in np.flatnonzero(~positive).tolist():
        answers = picked[j][0]
        assert answers.loaded is not None
        answer = answers.from_capacity(answers.loaded.at_rate(float(rates.ttft_rps[j])))
        known[int(searched[j])] = answer
        figures[searched[j]] = figures_of(answer)


def _queueing(
    replica: ReplicaModel | CorrectedSteps,
    booked_ttft_ms: float,
    batch: int,
    prompt_tokens: int,
    output: int,
) -> Queueing:
    """The figures ``at_demand`` needs, from the step model as ``perfmodel.capacity`` states
    them: TTFT at zero load = one prefill + half a step + a step per further prefill chunk (at
    the booked batch: conservative below it), and the prefill queue's service time = the
    prefill's GPU work + a step per chunk."""
    context = prompt_tokens + output // 2
    prefill_ms = replica.prefill_ms(1, prompt_tokens)
    work_ms = max(prefill_ms - replica.step_overhead_ms, 1e-3)
    decode_ms = replica.decode_ms(max(batch, 1), context)
    step_ms = decode_ms + max(batch, 1) * work_ms / max(output, 1)
    chunks = math.ceil(prompt_tokens / replica.prefill_chunk_tokens)
    single_itl_ms = replica.decode_ms(1, context) + work_ms / max(output, 1)
    return Queueing(
        booked_ttft_ms=booked_ttft_ms,
        unloaded_ttft_ms=prefill_ms + step_ms / 2 + (chunks - 1) * decode_ms,
        service_ms=work_ms + chunks * decode_ms,
        unloaded_itl_ms=single_itl_ms,
    )


__all__ = ["BudgetColumns", "CorrectedSteps", "ReplicaAnswers", "answers_at_budgets", "figures_of"]
