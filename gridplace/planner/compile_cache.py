"""Compile's cache across plans: what the performance model said about a node class, per
prediction question, keyed by content so that a replan asks only what changed.

Owns the content keys and the process-level store; ``group_predictor.GroupPredictor`` asks it before
predicting a group of pools. A question is one workload kind (model, engine, precisions, ITL and
TTFT targets, token counts, engine options) about one node class's prediction signature (GPU figures
after overrides, GPUs per node, interconnect, throttle bucket) at one TTFT budget; the answer is
that group's ``GroupPredictions`` for every configuration. Keys are SHA-256 digests of the
question's content and of the predictor's inputs (catalog, profiles, calibration:
``KeyedPredictor.cache_key``), never of object identities, so a new predictor built from the same
documents reuses the answers and one built from other documents (a new calibration) does not. A
predictor without a ``cache_key`` is not cached (its answers may change under the same key).

Answers are immutable (frozen dataclasses of numpy arrays nobody writes), so a cached compile
and an uncached one build the same ``Problem`` (``tests/planner/test_compile_cache.py``).
The store is bounded (``MAX_ENTRIES``, least recently used out first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gridplace.planner.ports import OptionPrediction, PredictionQuery

if TYPE_CHECKING:
    from gridplace.planner.options import GroupPredictions, PoolGrid
    from gridplace.specs import ModelArchitectureSpec
    from gridplace.specs.workload import InferenceWorkloadSpec

# About 40 KB an answer (a few dozen configurations): 200,000 answers stay well under 1 GiB,
# and a 10,000-node x 1,000-workload grid asks ~33,000 questions.
MAX_ENTRIES = 200_000

# A question's key: (what the workload kind asks, the node class, the TTFT budget), the first
# two as digests of their content.
Question = tuple[str, str, float]


def digest(*parts: str) -> str:
    """A content key: SHA-256 over the parts, each length-prefixed (no two splits collide)."""
    sha = hashlib.sha256()
    for part in parts:
        data = part.encode()
        sha.update(len(data).to_bytes(8, "little"))
        sha.update(data)
    return sha.hexdigest()


class KeyedPredictor:
    """An ``OptionPredictor`` with the content key of what it was built from."""

    def __init__(self, predict: Callable[[PredictionQuery], OptionPrediction], key: str) -> None:
        self._predict = predict
        self.cache_key = key

    def __call__(self, query: PredictionQuery) -> OptionPrediction:
        return self._predict(query)


@dataclass
class CacheCounts:
    """What one compile asked the cache: questions answered afresh or reused, node-class
    signatures seen for the first time or again."""

    questions_compiled: int = 0
    questions_reused: int = 0
    classes_compiled: int = 0
    classes_reused: int = 0


@dataclass
class CompileCache:
    """Answers by question (least recently used dropped past ``max_entries``) and the
    node-class signatures already predicted; ``last`` counts the latest compile."""

    max_entries: int = MAX_ENTRIES
    _answers: OrderedDict[Question, GroupPredictions] = field(default_factory=OrderedDict)
    _classes: set[str] = field(default_factory=set)
    last: CacheCounts = field(default_factory=CacheCounts)

    def begin(self) -> CacheCounts:
        """Start counting a new compile."""
        self.last = CacheCounts()
        return self.last

    def note_classes(self, signatures: Sequence[str]) -> None:
        """Count the compile's node-class signatures (digests) as new or known."""
        for signature in dict.fromkeys(signatures):
            if signature in self._classes:
                self.last.classes_reused += 1
            else:
                self._classes.add(signature)
                self.last.classes_compiled += 1

    def get(self, key: Question) -> GroupPredictions | None:
        """The cached answer to question ``key`` (counted as reused), or None."""
        found = self._answers.get(key)
        if found is not None:
            self._answers.move_to_end(key)
            self.last.questions_reused += 1
        return found

    def put(self, key: Question, answer: GroupPredictions) -> None:
        """Keep the answer just computed to question ``key`` (counted as compiled)."""
        self.last.questions_compiled += 1
        self._answers[key] = answer
        if len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)

    def clear(self) -> None:
        self._answers.clear()
        self._classes.clear()
        self.last = CacheCounts()


class CompileView:
    """One compile's keys into a ``CompileCache`` (or none: every answer computed): node-class
    digests computed once per signature, a question's digest once per workload."""

    def __init__(self, cache: CompileCache | None, predictor_key: str, grid: PoolGrid) -> None:
        self._cache = cache
        self._predictor_key = predictor_key
        self._grid = grid
        self._class_keys: dict[tuple[int, int], str] = {}
        if cache is not None:
            cache.begin()
            cache.note_classes([self.class_key(p) for p in range(len(grid.pools))])

    @classmethod
    def open(cls, cache: CompileCache | None, predictor: object, grid: PoolGrid) -> CompileView:
        """The view for a compile; one without a cache for a predictor with no content key
        (its answers could change under the same question)."""
        key: str | None = getattr(predictor, "cache_key", None)
        return cls(cache if key is not None else None, key or "", grid)

    def class_key(self, pool: int) -> str:
        """Digest of what a prediction reads of a pool (its node class's signature)."""
        grid = self._grid
        key = (int(grid.signature[pool]), grid.gpu_variant[pool])
        found = self._class_keys.get(key)
        if found is None:
            p = grid.pools[pool]
            found = digest(
                grid.pool_gpus[pool].model_dump_json(), p.gpu_model, str(p.gpus_per_node),
                p.interconnect.value, repr(p.throttle_ratio),
            )  # fmt: skip
            self._class_keys[key] = found
        return found

    def question(
        self, spec: InferenceWorkloadSpec, model_id: str, model: ModelArchitectureSpec
    ) -> str:
        """Digest of what a workload asks of every node class (the predictor's inputs too)."""
        if self._cache is None:
            return ""
        return digest(
            self._predictor_key, model_id, model.model_dump_json(), spec.engine.value,
            ",".join(p.value for p in spec.precisions), repr(spec.slo.itl_ms),
            repr(spec.slo.ttft_ms),
            str(spec.traffic.prompt_tokens), str(spec.traffic.output_tokens),
            spec.engine_options.model_dump_json() if spec.engine_options else "",
        )  # fmt: skip

    def cached(self, question: str, first: int, budget_ms: float) -> GroupPredictions | None:
        """The kept answer to ``question`` about the class of pool ``first`` at a TTFT budget,
        or None (always None without a cache)."""
        if self._cache is None:
            return None
        return self._cache.get((question, self.class_key(first), budget_ms))

    def keep(self, question: str, first: int, budget_ms: float, answer: GroupPredictions) -> None:
        """Keep a computed answer (``cached`` returned None for it)."""
        if self._cache is not None:
            self._cache.put((question, self.class_key(first), budget_ms), answer)


# The process's cache: plans made in one process (the API's solver worker, the simulator, a
# benchmark) share it.
PROCESS_CACHE = CompileCache()


__all__ = [
    "MAX_ENTRIES",
    "PROCESS_CACHE",
    "CacheCounts",
    "CompileCache",
    "CompileView",
    "KeyedPredictor",
    "digest",
]
