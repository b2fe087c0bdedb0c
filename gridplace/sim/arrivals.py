"""Request arrivals: when each request is sent, from which client region, and how long it is.

Owns: reading a request trace (the Azure LLM inference trace format), rescaling it to each
workload's rate, synthetic Poisson and bursty (MMPP) arrivals, and drawing each request's source
region and network jitter. Must not: know replicas, routing or step times.

Three processes, all over ``[0, duration_s)``, each workload drawn from its own seeded stream
(so adding a workload does not change another's requests):

- ``trace``: the trace's arrival times stretched so its mean rate equals the workload's
  ``requestsPerSecond`` (every gap x trace rate / workload rate), started at a seeded random point
  of the trace (workloads sharing one trace do not burst in lockstep) and wrapped around when the
  duration outlasts it. Token counts are ``scaled`` (default: each request's prompt and output
  multiplied by the workload's mean / the trace's mean, so the trace's spread is kept and the
  workload's means are met) or taken as-is (``trace``).
- ``poisson``: exponential gaps at the workload's rate.
- ``bursty``: a two-state Markov-modulated Poisson process (``BurstShape``): a high state at 3x
  the mean rate for 20 % of the time (sojourns of 30 s on average) and a low state whose rate
  keeps the overall mean at the workload's rate.
Synthetic requests have the workload's mean prompt and output lengths unless ``token_sigma`` > 0
(then lognormal around those means, mean preserved). A request is clipped to the model's context
window (prompt first kept, output shortened).

Trace format (``read_trace``): CSV with header ``TIMESTAMP,ContextTokens,GeneratedTokens``;
TIMESTAMP is ``YYYY-MM-DD HH:MM:SS[.fffffff]`` (Azure's form) or plain seconds. CRLF is fine.
Source of the shipped-with-shared-data traces: Azure LLM inference traces 2023 (CC BY 4.0;
Patel et al., "Splitwise", ISCA 2024).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gridplace.sim.errors import SimSettingsError, TraceError
from gridplace.sim.seeds import PURPOSE_ARRIVALS, stream

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


class ArrivalProcess(StrEnum):
    TRACE = "trace"
    POISSON = "poisson"
    BURSTY = "bursty"


class TokenMode(StrEnum):
    SCALED = "scaled"  # trace sizes x workload mean / trace mean
    TRACE = "trace"  # trace sizes as they are


@dataclass(frozen=True)
class Trace:
    """A request trace: arrival times (s, from the first request) and token counts."""

    times_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    source: str

    @property
    def span_s(self) -> float:
        return float(self.times_s[-1] - self.times_s[0]) if len(self.times_s) > 1 else 0.0

    @property
    def rate_rps(self) -> float:
        return (len(self.times_s) - 1) / self.span_s if self.span_s > 0 else 0.0

    @property
    def mean_prompt_tokens(self) -> float:
        return float(self.prompt_tokens.mean())

    @property
    def mean_output_tokens(self) -> float:
        return float(self.output_tokens.mean())


def _timestamp_s(text: str) -> float:
    """Seconds from a trace TIMESTAMP: plain seconds, or 'YYYY-MM-DD HH:MM:SS.fffffff'."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    day, _, clock = text.partition(" ")
    hours, minutes, seconds = clock.split(":")
    # Any fixed day works as the origin: only differences are used.
    days = date.fromisoformat(day).toordinal()
    return days * 86_400.0 + int(hours) * 3600.0 + int(minutes) * 60.0 + float(seconds)


def read_trace(path: Path | str) -> Trace:
    """Read a trace CSV (see the module docstring); raises ``TraceError`` naming the line."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as error:
        raise TraceError(path, f"cannot read: {error.strerror}") from None
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:3]) != TRACE_COLUMNS:
            raise TraceError(path, f"expected the header {','.join(TRACE_COLUMNS)}", 1)
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                times.append(_timestamp_s(row[0]))
                prompts.append(int(row[1]))
                outputs.append(int(row[2]))
            except (ValueError, IndexError):
                raise TraceError(path, f"cannot read row {row!r}", line) from None
            if prompts[-1] < 1 or outputs[-1] < 0:
                raise TraceError(path, "token counts must be >= 1 (prompt) and >= 0", line)
    if len(times) < 2:
        raise TraceError(path, f"needs at least 2 requests, has {len(times)}")
    order = np.argsort(np.asarray(times), kind="stable")
    times_s = np.asarray(times, dtype=np.float64)[order]
    return Trace(
        times_s=times_s - times_s[0],
        prompt_tokens=np.asarray(prompts, dtype=np.int64)[order],
        # A request with no generated token still streams one (the first token ends TTFT).
        output_tokens=np.maximum(np.asarray(outputs, dtype=np.int64)[order], 1),
        source=str(path),
    )


@dataclass(frozen=True)
class WorkloadTraffic:
    """What arrivals need of a workload."""

    name: str
    requests_per_second: float
    prompt_tokens: int
    output_tokens: int
    regions: tuple[str, ...]
    shares: tuple[float, ...]
    max_context_tokens: int | None = None


@dataclass(frozen=True)
class BurstShape:
    """The two-state MMPP of ``bursty`` arrivals."""

    high_share: float = 0.2  # of the time in the high state
    high_factor: float = 3.0  # high rate / mean rate
    high_sojourn_s: float = 30.0  # mean time in the high state


@dataclass(frozen=True)
class Arrivals:
    """Every request of a run, sorted by send time.

    ``workload`` indexes the traffic list given to ``generate``; ``region`` indexes that
    workload's ``regions``; ``rtt_z`` is a standard normal draw the network turns into this
    request's RTT jitter.
    """

    time_s: FloatArray
    workload: IntArray
    region: IntArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    rtt_z: FloatArray

    def __len__(self) -> int:
        return len(self.time_s)

    @staticmethod
    def concatenate(parts: Sequence[Arrivals]) -> Arrivals:
        if not parts:
            empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
            return Arrivals(empty_f, empty_i, empty_i, empty_i, empty_i, empty_f)
        times = np.concatenate([p.time_s for p in parts])
        order = np.argsort(times, kind="stable")
        return Arrivals(
            time_s=times[order],
            workload=np.concatenate([p.workload for p in parts])[order],
            region=np.concatenate([p.region for p in parts])[order],
            prompt_tokens=np.concatenate([p.prompt_tokens for p in parts])[order],
            output_tokens=np.concatenate([p.output_tokens for p in parts])[order],
            rtt_z=np.concatenate([p.rtt_z for p in parts])[order],
        )


def generate(
    traffic: Sequence[WorkloadTraffic],
    duration_s: float,
    process: ArrivalProcess = ArrivalProcess.POISSON,
    seed: int = 0,
    trace: Trace | None = None,
    tokens: TokenMode = TokenMode.SCALED,
    token_sigma: float = 0.0,
    burst: BurstShape | None = None,
) -> Arrivals:
    """All requests of all workloads over ``[0, duration_s)`` (see the module docstring)."""
    if not duration_s > 0:
        raise SimSettingsError("duration_s", duration_s, "must be > 0")
    if process is ArrivalProcess.TRACE and trace is None:
        raise SimSettingsError("trace", None, "the trace process needs a trace")
    if token_sigma < 0:
        raise SimSettingsError("token_sigma", token_sigma, "must be >= 0")
    parts = []
    for index, workload in enumerate(traffic):
        rng = stream(seed, workload.name, PURPOSE_ARRIVALS)
        if process is ArrivalProcess.TRACE:
            assert trace is not None
            times, prompts, outputs = _from_trace(workload, trace, duration_s, tokens, rng)
        else:
            if process is ArrivalProcess.POISSON:
                times = _poisson(workload.requests_per_second, duration_s, rng)
            else:
                times = _mmpp(workload.requests_per_second, duration_s, burst or BurstShape(), rng)
            prompts = _sizes(workload.prompt_tokens, len(times), token_sigma, rng)
            outputs = _sizes(workload.output_tokens, len(times), token_sigma, rng)
        prompts, outputs = _clip(prompts, outputs, workload.max_context_tokens)
        count = len(times)
        shares = np.asarray(workload.shares, dtype=np.float64)
        regions = rng.choice(len(shares), size=count, p=shares / shares.sum())
        parts.append(
            Arrivals(
                time_s=times,
                workload=np.full(count, index, dtype=np.int64),
                region=regions.astype(np.int64),
                prompt_tokens=prompts,
                output_tokens=outputs,
                rtt_z=rng.standard_normal(count),
            )
        )
    return Arrivals.concatenate(parts)


def _poisson(rate_rps: float, duration_s: float, rng: np.random.Generator) -> FloatArray:
    # A Poisson count spread uniformly is a Poisson process (and needs no loop).
    count = int(rng.poisson(rate_rps * duration_s))
    return np.sort(rng.uniform(0.0, duration_s, count))


def _mmpp(
    rate_rps: float, duration_s: float, shape: BurstShape, rng: np.random.Generator
) -> FloatArray:
    high, factor = shape.high_share, shape.high_factor
    if not (0 < high < 1 and factor >= 1 and high * factor < 1):
        raise SimSettingsError(
            "burst", shape, "needs 0 < high_share < 1 <= high_factor and share x factor < 1"
        )
    low_factor = (1 - high * factor) / (1 - high)
    low_sojourn_s = shape.high_sojourn_s * (1 - high) / high
    pieces: list[FloatArray] = []
    now = 0.0
    in_high = bool(rng.random() < high)  # start in the stationary distribution
    while now < duration_s:
        sojourn = rng.exponential(shape.high_sojourn_s if in_high else low_sojourn_s)
        end = min(now + sojourn, duration_s)
        rate = rate_rps * (factor if in_high else low_factor)
        count = int(rng.poisson(rate * (end - now)))
        pieces.append(rng.uniform(now, end, count))
        now, in_high = end, not in_high
    return np.sort(np.concatenate(pieces)) if pieces else np.zeros(0)


def _sizes(mean: int, count: int, sigma: float, rng: np.random.Generator) -> IntArray:
    if sigma == 0:
        return np.full(count, mean, dtype=np.int64)
    draws = mean * np.exp(sigma * rng.standard_normal(count) - sigma * sigma / 2)
    sizes: IntArray = np.maximum(np.rint(draws), 1).astype(np.int64)
    return sizes


def _from_trace(
    workload: WorkloadTraffic,
    trace: Trace,
    duration_s: float,
    tokens: TokenMode,
    rng: np.random.Generator,
) -> tuple[FloatArray, IntArray, IntArray]:
    if trace.rate_rps <= 0:
        raise SimSettingsError("trace", trace.source, "all requests arrive at one instant")
    stretch = trace.rate_rps / workload.requests_per_second
    base = trace.times_s * stretch
    # One period = the trace plus one mean gap, so the wrap point looks like any other gap.
    period_s = (trace.span_s + 1 / trace.rate_rps) * stretch
    offset_s = rng.uniform(0.0, period_s)
    repeats = math.ceil((duration_s + offset_s) / period_s)
    times = (base[None, :] + period_s * np.arange(repeats)[:, None]).ravel() - offset_s
    keep = (times >= 0) & (times < duration_s)
    prompts = np.tile(trace.prompt_tokens, repeats)[keep]
    outputs = np.tile(trace.output_tokens, repeats)[keep]
    if tokens is TokenMode.SCALED:
        prompt_scale = workload.prompt_tokens / trace.mean_prompt_tokens
        output_scale = workload.output_tokens / trace.mean_output_tokens
        prompts = np.maximum(np.rint(prompts * prompt_scale), 1).astype(np.int64)
        outputs = np.maximum(np.rint(outputs * output_scale), 1).astype(np.int64)
    return times[keep], prompts, outputs


def _clip(
    prompts: IntArray, outputs: IntArray, max_context: int | None
) -> tuple[IntArray, IntArray]:
    if max_context is None:
        return prompts, outputs
    prompts = np.minimum(prompts, max_context - 1)
    outputs = np.minimum(outputs, max_context - prompts)
    return prompts, np.maximum(outputs, 1)
