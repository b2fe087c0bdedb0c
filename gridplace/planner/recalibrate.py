"""Learning corrections of the performance model from what the engines report. The server
(``api/service.py``) and the simulator's loop (``sim/loop.py``) run these same functions; when
corrections call for a new plan is ``replan_triggers``' business.

Owns: the estimator (observation windows -> ``Calibration``) and the units of a correction.
Must not: read or write anything (no I/O), solve, or reach into the performance model's
internals: corrections are factors on its output (``planner/predictor.py`` applies them).

Units. A correction is a factor on the GPU part of a step: the model's step time minus the
engine's host overhead per step (``step_overhead_ms``: scheduling, input preparation, launches the
GPU waits for), so a corrected step is overhead + (step - overhead) x factor (``corrected``).
That is the physical quantity: what a model misses on unprofiled hardware is kernel time (clocks,
kernels, memory), while the host's per-step time does not scale with the GPU, so a factor on the
whole step would also scale the overhead and mispredict other batch sizes. It is the quantity
the simulator's truth biases (``sim/steps.py`` applies ``corrected`` too), so a learned factor
converges to the truth's.

Estimator. A window of one replica gives, for each phase it has figures for, the ratio observed /
predicted of the GPU part at the operating point it observed (``gpu_part_ratio``): decode =
(decodeSeconds / decodeSteps) against the model's decode step at (meanRunningBatch,
meanContextTokens), or the ITL (mean, else p50) against the same step when the engine reports no
step counts; prefill = (prefillSeconds / requests) against the model's prefill of one prompt of
promptTokens / requests. "Model" is the performance model for the node's GPU (its overrides
applied; a replica on 1/gpuShare of a GPU on that slice), the window's model, precision, engine
and TP, at the node's booked throttle ratio, with no correction: corrections are absolute, never
compounded. Both are the planner's units: it books a replica's capacity from the model's steps at
the booked throttle ratio and its prefill of the workload's mean prompt, so a prefill factor
learned at the window's mean prompt carries the spread of prompt lengths (the mean prefill of
the prompts served over the prefill of their mean length: 0.92-1.09 on the conversation trace)
exactly as the capacity needs it.
Each window weighs w = min(1, requests / ``full_weight_requests``). Logs of the ratios x are
pooled with normal shrinkage, each level towards the one above it, the top towards the prior
(factor 1, log 0):

    grid level:  a = sum_all(w x) / (sum_all(w) + type_prior_windows)
    type level:  g = a + sum_key(w (x - a)) / (sum_key(w) + type_prior_windows)
    node level:  n = g + sum_node(w (x - g)) / (sum_node(w) + node_prior_windows)

where a key is (GPU type, model, precision, engine). The prior weights k (in full windows)
are empirical Bayes: k = s^2 / tau^2, s^2 the weighted variance of windows around their own
group's mean (a group: a node of the key at the node level, a key at the type level), tau^2 how
far the groups' means spread beyond what that noise explains (method of moments), and k at most
the settings' ``type_prior_windows`` (16) / ``node_prior_windows`` (8), which also hold when
the figures cannot tell (one group, fewer than ``MIN_NOISE_WINDOWS`` windows beyond each
group's first, or no spread beyond the noise). So one full window moves its type by
1 - (k / (1 + k))^2 of the way (11% with k = 16), and many move it fully; where windows are
precise and groups differ (in the simulator one window's decode step is within 0.5% of the
next while nodes of one GPU type differ by several percent), a node's factor is its own
windows' after a few windows instead of carrying its type's for dozens. The grid level is
the learned prior of a key nobody observed yet: without it, when the model is optimistic
everywhere, every unobserved GPU type would look better than the observed ones and the planner
would chase them. Factors are clamped to ``factor_bounds``. The planner books the type level,
else the grid level (it plans node classes, not nodes); the node level is shown and used for
node-level prediction error.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gridplace.planner.perfmodel import Predictor as ReplicaModel
from gridplace.planner.pools import effective_gpu, share_of
from gridplace.specs import (
    Catalog,
    Node,
    ObservationWindow,
)
from gridplace.specs.common import Engine, Precision

CalibrationKey = tuple[str, str, str, str]  # (GPU id, model id, precision, engine)


@dataclass(frozen=True)
class EstimatorSettings:
    """The estimator's parameters (see the module docstring)."""

    type_prior_windows: float = 16.0
    node_prior_windows: float = 8.0
    full_weight_requests: int = 20
    factor_bounds: tuple[float, float] = (0.2, 5.0)


@dataclass(frozen=True)
class Correction:
    """Step-time factors (observed / predicted) and the windows' weight behind each."""

    decode: float = 1.0
    prefill: float = 1.0
    decode_weight: float = 0.0
    prefill_weight: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "decodeFactor": round(self.decode, 5),
            "prefillFactor": round(self.prefill, 5),
            "decodeWeight": round(self.decode_weight, 3),
            "prefillWeight": round(self.prefill_weight, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Correction:
        return cls(
            float(data["decodeFactor"]),
            float(data["prefillFactor"]),
            float(data.get("decodeWeight", 0.0)),
            float(data.get("prefillWeight", 0.0)),
        )


@dataclass(frozen=True)
class Calibration:
    """Corrections per GPU type (x model, precision, engine) and per node."""

    gpu_types: Mapping[CalibrationKey, Correction] = field(default_factory=dict)
    nodes: Mapping[tuple[str, CalibrationKey], Correction] = field(default_factory=dict)
    grid: Correction | None = None  # the pooled level of every key: an unobserved key's
    windows: int = 0  # windows used
    ignored: int = 0  # windows with no usable figure, or of an unknown node/GPU/model

    def for_type(self, key: CalibrationKey) -> Correction | None:
        return self.gpu_types.get(key) or self.grid

    def for_node(self, node: str, key: CalibrationKey) -> Correction | None:
        return self.nodes.get((node, key)) or self.for_type(key)

    def as_dict(self) -> dict[str, Any]:
        def keyed(key: CalibrationKey) -> dict[str, str]:
            gpu, model, precision, engine = key
            return {"gpu": gpu, "model": model, "precision": precision, "engine": engine}

        return {
            "windows": self.windows,
            "ignored": self.ignored,
            "grid": self.grid.as_dict() if self.grid else None,
            "gpuTypes": [{**keyed(k), **c.as_dict()} for k, c in sorted(self.gpu_types.items())],
            "nodes": [
                {"node": n, **keyed(k), **c.as_dict()} for (n, k), c in sorted(self.nodes.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        def key(row: Mapping[str, Any]) -> CalibrationKey:
            return (row["gpu"], row["model"], row["precision"], row["engine"])

        return cls(
            gpu_types={key(r): Correction.from_dict(r) for r in data.get("gpuTypes", [])},
            nodes={(r["node"], key(r)): Correction.from_dict(r) for r in data.get("nodes", [])},
            grid=Correction.from_dict(data["grid"]) if data.get("grid") else None,
            windows=int(data.get("windows", 0)),
            ignored=int(data.get("ignored", 0)),
        )


def corrected(step_ms: float, overhead_ms: float, factor: float) -> float:
    """A step's time with its GPU part (the step minus the host overhead) times ``factor``."""
    return overhead_ms + max(step_ms - overhead_ms, 0.0) * factor


def gpu_part_ratio(observed_ms: float, predicted_ms: float, overhead_ms: float) -> float:
    """The factor ``corrected`` needs to turn ``predicted_ms`` into ``observed_ms`` (observed /
    predicted GPU part; an observed step at or below the overhead gives the floor 0)."""
    return max(observed_ms - overhead_ms, 0.0) / max(predicted_ms - overhead_ms, MIN_GPU_PART_MS)


MIN_GPU_PART_MS = 1e-3  # a step the model predicts as all overhead still has some GPU work


class StepModel(Protocol):
    """The uncorrected performance model of one replica configuration."""

    @property
    def step_overhead_ms(self) -> float: ...

    def decode_ms(self, batch: int, context_tokens: int) -> float: ...

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float: ...


StepOracle = Callable[[ObservationWindow], StepModel | None]


def key_of(window: ObservationWindow) -> CalibrationKey:
    return (window.gpu, window.model, window.precision.value, window.engine.value)


@dataclass(frozen=True)
class WindowRatio:
    """One window's observed / predicted step times (None: no figure for that phase)."""

    node: str
    key: CalibrationKey
    decode: float | None
    prefill: float | None
    weight: float


# Engines without a request counter (llama-server) report tokens only: their windows count as
# generated tokens over this many per request (a chat reply's order of magnitude), which sets only
# how much weight the window gets and the prompt length its prefill is compared at.
OUTPUT_TOKENS_PER_UNCOUNTED_REQUEST = 256


def served_requests(window: ObservationWindow) -> float:
    """Requests the window served: counted, or estimated from its generated tokens."""
    if window.requests is not None:
        return float(window.requests)
    return window.output_tokens / OUTPUT_TOKENS_PER_UNCOUNTED_REQUEST


def window_ratio(
    window: ObservationWindow, oracle: StepOracle, settings: EstimatorSettings
) -> WindowRatio | None:
    """The window's ratios at its operating point (module docstring), or None if unusable."""
    model = oracle(window)
    requests = served_requests(window)
    if model is None or requests <= 0:
        return None
    batch = max(1, round(window.mean_running_batch or 1))
    context = max(1, round(window.mean_context_tokens or 1))
    decode = None
    if window.decode_seconds and window.decode_steps:
        decode = window.decode_seconds * 1000.0 / window.decode_steps
    elif window.itl is not None and (window.itl.mean_ms or window.itl.p50_ms):
        decode = window.itl.mean_ms or window.itl.p50_ms
    overhead = model.step_overhead_ms
    prefill = None
    if window.prefill_seconds and window.prompt_tokens:
        prompt = max(1, round(window.prompt_tokens / requests))
        observed = window.prefill_seconds * 1000.0 / requests
        prefill = gpu_part_ratio(observed, model.prefill_ms(1, prompt), overhead)
    if decode is not None:
        decode = gpu_part_ratio(decode, model.decode_ms(batch, context), overhead)
    if decode is None and prefill is None:
        return None
    weight = min(1.0, requests / settings.full_weight_requests)
    low, high = settings.factor_bounds  # one window's wild figure cannot dominate the pool
    decode, prefill = (None if r is None else min(high, max(low, r)) for r in (decode, prefill))
    return WindowRatio(window.node, key_of(window), decode, prefill, weight)


def estimate(
    windows: Iterable[ObservationWindow],
    oracle: StepOracle,
    settings: EstimatorSettings | None = None,
) -> Calibration:
    """Pooled corrections from ``windows`` (see the module docstring)."""
    settings = settings or EstimatorSettings()
    ratios: list[WindowRatio] = []
    ignored = 0
    for window in windows:
        found = window_ratio(window, oracle, settings)
        if found is None:
            ignored += 1
        else:
            ratios.append(found)
    by_key: dict[CalibrationKey, list[WindowRatio]] = defaultdict(list)
    for ratio in ratios:
        by_key[ratio.key].append(ratio)
    types: dict[CalibrationKey, Correction] = {}
    nodes: dict[tuple[str, CalibrationKey], Correction] = {}
    decode_a, all_dw = _pool(ratios, "decode", 0.0, settings.type_prior_windows)
    prefill_a, all_pw = _pool(ratios, "prefill", 0.0, settings.type_prior_windows)
    grid = _correction(decode_a, prefill_a, all_dw, all_pw, settings) if ratios else None
    type_k = {
        phase: prior_windows(list(by_key.values()), phase, settings.type_prior_windows)
        for phase in PHASES
    }
    for key, rows in by_key.items():
        decode_g, decode_w = _pool(rows, "decode", decode_a, type_k["decode"])
        prefill_g, prefill_w = _pool(rows, "prefill", prefill_a, type_k["prefill"])
        types[key] = _correction(decode_g, prefill_g, decode_w, prefill_w, settings)
        by_node: dict[str, list[WindowRatio]] = defaultdict(list)
        for row in rows:
            by_node[row.node].append(row)
        node_k = {
            phase: prior_windows(list(by_node.values()), phase, settings.node_prior_windows)
            for phase in PHASES
        }
        for node, mine in by_node.items():
            decode_n, node_dw = _pool(mine, "decode", decode_g, node_k["decode"])
            prefill_n, node_pw = _pool(mine, "prefill", prefill_g, node_k["prefill"])
            nodes[(node, key)] = _correction(decode_n, prefill_n, node_dw, node_pw, settings)
    return Calibration(types, nodes, grid, windows=len(ratios), ignored=ignored)


def _pool(
    rows: Sequence[WindowRatio], phase: str, prior: float, prior_windows: float
) -> tuple[float, float]:
    """Shrunk mean of the rows' log ratios towards ``prior``, and the weight behind it."""
    weight = total = 0.0
    for row in rows:
        ratio = getattr(row, phase)
        if ratio is None or ratio <= 0:
            continue
        weight += row.weight
        total += row.weight * (math.log(ratio) - prior)
    return prior + total / (weight + prior_windows), weight


PHASES = ("decode", "prefill")
# Windows beyond each group's first that the noise estimate needs: fewer could make a lucky run
# of similar windows look noiseless and let a node's first windows move it fully.
MIN_NOISE_WINDOWS = 5


def _logs(rows: Sequence[WindowRatio], phase: str) -> list[tuple[float, float]]:
    """(weight, log ratio) of the rows with a figure for ``phase``."""
    found = ((row.weight, getattr(row, phase)) for row in rows)
    return [(w, math.log(r)) for w, r in found if r is not None and r > 0 and w > 0]


def prior_windows(groups: Sequence[Sequence[WindowRatio]], phase: str, most: float) -> float:
    """The shrinkage weight (full windows) toward the level above: the windows' noise s^2 over
    the groups' spread beyond it tau^2 (module docstring), at most ``most``; ``most`` when the
    figures cannot tell."""
    logs = [found for rows in groups if (found := _logs(rows, phase))]
    means, weights, squares, freedom = [], [], 0.0, 0.0
    for found in logs:
        weight = sum(w for w, _ in found)
        mean = sum(w * x for w, x in found) / weight
        means.append(mean)
        weights.append(weight)
        squares += sum(w * (x - mean) ** 2 for w, x in found)
        freedom += len(found) - 1
    if len(means) < 2 or freedom < MIN_NOISE_WINDOWS:
        return most
    noise = squares / freedom  # per full-weight window
    centre = sum(w * m for w, m in zip(weights, means, strict=True)) / sum(weights)
    spread = sum((m - centre) ** 2 - noise / w for m, w in zip(means, weights, strict=True))
    spread /= len(means) - 1
    if spread <= 0:
        return most
    return min(most, noise / spread)


def _correction(
    log_decode: float, log_prefill: float, decode_w: float, prefill_w: float,
    settings: EstimatorSettings,
) -> Correction:  # fmt: skip
    low, high = settings.factor_bounds
    return Correction(
        min(high, max(low, math.exp(log_decode))),
        min(high, max(low, math.exp(log_prefill))),
        decode_w,
        prefill_w,
    )


class ModelOracle:
    """``StepOracle`` over the performance model, for the nodes and catalog given."""

    def __init__(self, nodes: Sequence[Node], catalog: Catalog) -> None:
        self._nodes = {n.name: n for n in nodes}
        self._catalog = catalog
        self._found: dict[tuple[object, ...], ReplicaModel | None] = {}

    def __call__(self, window: ObservationWindow) -> StepModel | None:
        node = self._nodes.get(window.node)
        share = window.gpu_share
        config = (window.node, window.gpu, window.model, window.precision, window.engine,
                  window.tensor_parallel, share)  # fmt: skip
        if config in self._found:
            return self._found[config]
        model = None
        group = next((g for g in node.spec.gpus if g.model == window.gpu), None) if node else None
        arch = self._catalog.models.get(window.model)
        gpu = self._catalog.gpus.get(window.gpu)
        if node is not None and group is not None and arch is not None and gpu is not None:
            model = ReplicaModel(  # on its slice of the GPU, as the planner predicted it
                arch, share_of(effective_gpu(gpu, group), share), Precision(window.precision),
                Engine(window.engine), window.tensor_parallel, node.throttle_ratio,
                node.spec.interconnect, model_id=window.model,
                gpu_id=window.gpu if share == 1 else None,
            )  # fmt: skip
            if model.unsupported is not None:
                model = None
        self._found[config] = model
        return model
