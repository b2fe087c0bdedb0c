"""Step times a replica runs at: the seam between the simulator and the performance model.

Owns: the ``StepTimes`` protocol replicas ask (injectable: tests use fakes with known times),
the cached adapter over ``perfmodel.Predictor`` with a node's hidden efficiency factors applied,
the time-varying ``SpeedSchedule`` (normal / throttled), and a replica's ``ReplicaLimits``.
Must not: decide batching (``replica``) or draw hidden figures (``truth``).

Caching: decode steps are keyed by (batch, context rounded to ``CONTEXT_BUCKET`` tokens, taken
at the bucket's middle) and prefills by exact prompt length, so a one-hour run asks the
performance model a few thousand times, not millions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gridplace.planner.perfmodel import Predictor
from gridplace.planner.recalibrate import corrected
from gridplace.sim.bias import NO_BIAS, StepBias

CONTEXT_BUCKET = 32  # tokens
MAX_SEQUENCES = 256  # concurrent sequences an engine schedules (vLLM's max_num_seqs default)
TOKEN_BUDGET = 2048  # tokens per step, decode + prefill chunks (vLLM V1 max_num_batched_tokens)


class StepTimes(Protocol):
    """How long a replica's steps take, ms, at one speed."""

    @property
    def overhead_ms(self) -> float:
        """Host time of any step (a prefill chunk's work excludes it)."""
        ...

    def decode_ms(self, batch: int, context_tokens: int) -> float:
        """One decode step of ``batch`` sequences whose mean context is ``context_tokens``."""
        ...

    def prefill_ms(self, prompt_tokens: int) -> float:
        """The prefill of one prompt alone, overhead included."""
        ...


@dataclass(frozen=True)
class ReplicaLimits:
    """What a replica can hold at once."""

    kv_tokens: int  # KV cache capacity, tokens of all sequences together
    max_sequences: int = MAX_SEQUENCES
    token_budget: int = TOKEN_BUDGET


class PredictorSteps:
    """``StepTimes`` from the performance model, times the hidden factors.

    The factors multiply the GPU part of a step (not the host overhead), the same quantity a
    learned correction multiplies (``recalibrate.corrected``): the node's ``decode_factor`` the
    decode step, ``prefill_factor`` the prefill work, each times the systematic ``bias`` of the
    replica's configuration at the step's batch and tokens.
    """

    def __init__(
        self,
        predictor: Predictor,
        decode_factor: float = 1.0,
        prefill_factor: float = 1.0,
        bias: StepBias = NO_BIAS,
    ) -> None:
        self._predictor = predictor
        self._decode_factor = decode_factor
        self._prefill_factor = prefill_factor
        self._bias = bias
        self._overhead_ms = predictor.step_overhead_ms
        self._decode: dict[tuple[int, int], float] = {}
        self._prefill: dict[int, float] = {}

    @property
    def overhead_ms(self) -> float:
        return self._overhead_ms

    def decode_ms(self, batch: int, context_tokens: int) -> float:
        bucket = context_tokens // CONTEXT_BUCKET
        key = (batch, bucket)
        found = self._decode.get(key)
        if found is None:
            context = bucket * CONTEXT_BUCKET + CONTEXT_BUCKET // 2
            raw = self._predictor.decode_ms(batch, context)
            factor = self._decode_factor * self._bias.decode(batch, context)
            found = corrected(raw, self._overhead_ms, factor)
            self._decode[key] = found
        return found

    def prefill_ms(self, prompt_tokens: int) -> float:
        found = self._prefill.get(prompt_tokens)
        if found is None:
            tokens = max(prompt_tokens, 1)
            raw = self._predictor.prefill_ms(1, tokens)
            factor = self._prefill_factor * self._bias.prefill(tokens)
            found = corrected(raw, self._overhead_ms, factor)
            self._prefill[prompt_tokens] = found
        return found


class SpeedSchedule:
    """A replica's step times over time: ``normal``, or ``throttled`` between toggles.

    ``at`` is asked with non-decreasing times in a run (a cursor makes it O(1)); an earlier time
    falls back to a search.
    """

    def __init__(
        self,
        normal: StepTimes,
        throttled: StepTimes | None = None,
        toggles_s: npt.NDArray[np.float64] | None = None,
        throttled_at_start: bool = False,
    ) -> None:
        self.normal = normal
        self.throttled = throttled or normal
        self._toggles = [float(t) for t in (toggles_s if toggles_s is not None else ())]
        self._start = throttled_at_start
        self._cursor = 0
        self._last_s = -np.inf

    def at(self, time_s: float) -> StepTimes:
        if time_s < self._last_s:
            self._cursor = int(np.searchsorted(self._toggles, time_s, side="right"))
        self._last_s = time_s
        toggles, cursor = self._toggles, self._cursor
        while cursor < len(toggles) and toggles[cursor] <= time_s:
            cursor += 1
        self._cursor = cursor
        return self.throttled if self._start ^ (cursor % 2 == 1) else self.normal
