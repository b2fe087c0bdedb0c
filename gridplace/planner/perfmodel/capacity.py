"""Requests per second one replica sustains while keeping TTFT and ITL inside an SLO.

Owns: the queueing arithmetic. Must not: time steps itself (it asks a ``StepModel``).

The replica runs continuous batching with prefills interleaved into decode steps (vLLM/SGLang
chunked prefill, TensorRT-LLM in-flight batching). With prompt P, output O, and a request's mean
context P + O/2 during decode:

- p      = prefill time of one prompt alone (its TTFT without network or queueing);
  p_work = p minus the engine's per-step overhead (the GPU work a prefill adds to a shared step).
- d(B)   = decode step with B sequences in flight.
- Each of the O steps of a request also carries, on average, B/O prefills' worth of work, so the
  mean ITL at concurrency B is s(B) = d(B) + B p_work / O (increasing in B).
- B*     = the largest B with s(B) <= ``ITL_BOOKING`` (0.85) x the ITL target (per-request ITL
  spreads around the mean step) and B sequences of P + O tokens in the KV cache (<= MAX_BATCH).
- Saturation throughput (Little's law, the GPU never idle): B* sequences finish every
  B* p_work + O d(B*) ms, so lambda_sat = B* / (B* p_work + O d(B*)). A replica is booked at
  ``SATURATION_HEADROOM`` (85%) of it: above that, requests queue for batch slots and TTFT grows
  without bound.
- TTFT under load: a new prompt waits for the step in flight (s/2 on average), is served by the
  prefill "server" in ceil(P / chunk) chunks, each riding one decode step (service time
  t = p_work + chunks d(B*), load rho = lambda t), and waits for the prompts ahead of it: the
  ``TTFT_QUANTILE`` (95%) quantile of an M/M/1 wait, t / (1 - rho) ln(rho / 0.05) (an exponential
  tail, conservative against the M/D/1 of fixed-size prompts; 0 while rho <= 0.05). So
  TTFT(lambda) = p + s/2 + (chunks - 1) d(B*) + that wait, and the largest lambda with
  TTFT(lambda) <= TTFT target - network RTT bounds the rate (bisection: TTFT grows with lambda).
- capacity = min(0.85 lambda_sat, lambda_ttft); concurrency at that rate is Little's law again:
  lambda x (TTFT + O s).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

SATURATION_HEADROOM = 0.85
# Per-request ITL spreads around the step time of the mean batch (batches grow and shrink): the
# batch is sized for a mean step of this share of the target.
ITL_BOOKING = 0.85
# TTFT is held at this quantile of the queueing delay, not at its mean.
TTFT_QUANTILE = 0.95
MAX_BATCH = 4096  # engines cap concurrent sequences well below this (vLLM max_num_seqs 256-1024)

Limit = Literal["itl", "ttft", "kv-cache"]


class StepModel(Protocol):
    """What capacity needs from a predictor."""

    @property
    def step_overhead_ms(self) -> float: ...

    @property
    def prefill_chunk_tokens(self) -> int: ...

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float: ...

    def decode_ms(self, batch: int, context_tokens: int) -> float: ...

    def max_sequences(self, tokens_per_sequence: int) -> int: ...


class LatencyTargets(Protocol):
    """An SLO (``specs.workload.ServiceLevel`` is one)."""

    @property
    def ttft_ms(self) -> float: ...

    @property
    def itl_ms(self) -> float: ...


class TrafficShape(Protocol):
    """Request sizes (``specs.workload.Traffic`` is one)."""

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Capacity:
    """One replica's capacity inside an SLO, and what limits it."""

    rps: float  # requests/s inside the SLO; 0 when the SLO cannot be met at all
    max_batch: int  # B*: concurrent sequences at the ITL target (0 if none)
    concurrency: float  # mean sequences in flight at ``rps`` (Little's law)
    itl_ms: float  # mean ITL at B* with prefills interleaved
    ttft_ms: float  # TTFT at ``rps``, its TTFT_QUANTILE with queueing, without network RTT
    limited_by: Limit
    reason: str  # why it is not higher, with numbers


def wait_quantile_ms(rho: float, service_ms: float, quantile: float = TTFT_QUANTILE) -> float:
    """The ``quantile`` of the wait in queue at load ``rho`` < 1, M/M/1 tail (conservative
    against M/D/1): P(wait > t) = rho exp(-(1 - rho) t / s)."""
    miss = 1.0 - quantile
    if rho <= miss:
        return 0.0
    return service_ms / (1.0 - rho) * math.log(rho / miss)


def _mean_itl(
    model: StepModel, batch: int, context: int, prefill_work_ms: float, output: int
) -> float:
    return model.decode_ms(batch, context) + batch * prefill_work_ms / output


@dataclass(frozen=True, slots=True)
class LoadedReplica:
    """What capacity knows before the TTFT target: the batch at the ITL target and the figures
    of the prefill queue at it (every TTFT budget reads the same ones)."""

    itl_target_ms: float
    prompt: int  # tokens, >= 1
    output: int  # tokens, >= 1
    kv_limit: int
    batch: int  # B*
    step_ms: float  # s(B*)
    decode_ms: float  # d(B*)
    prefill_ms: float  # p
    throughput_rps: float  # 0.85 lambda_sat
    unloaded_ttft_ms: float  # p + s/2
    chunks: int
    service_ms: float

    def ttft_quantile(self, rps: float) -> float:
        """TTFT at ``rps``: its TTFT_QUANTILE with queueing, without network RTT."""
        rho = min(rps * self.service_ms / 1e3, 0.999)
        return (
            self.unloaded_ttft_ms
            + (self.chunks - 1) * self.decode_ms
            + wait_quantile_ms(rho, self.service_ms)
        )

    def at_budget(self, ttft_target_ms: float, rtt_ms: float = 0.0) -> Capacity:
        """Capacity inside a TTFT target ``rtt_ms`` away from the clients."""
        budget_ms = ttft_target_ms - rtt_ms
        if self.unloaded_ttft_ms > budget_ms:
            return self.over_budget(ttft_target_ms, rtt_ms)
        return self.at_rate(_largest_rate(self.ttft_quantile, self.throughput_rps, budget_ms))

    def over_budget(self, ttft_target_ms: float, rtt_ms: float) -> Capacity:
        """Zero capacity: TTFT before any queueing is past the budget."""
        budget_ms = ttft_target_ms - rtt_ms
        return Capacity(
            0.0,
            self.batch,
            0.0,
            self.step_ms,
            self.unloaded_ttft_ms,
            "ttft",
            f"TTFT {self.unloaded_ttft_ms:.0f} ms before any queueing exceeds the "
            f"{budget_ms:.0f} ms left of the {ttft_target_ms:g} ms target after {rtt_ms:.0f} ms "
            "RTT",
        )

    def at_rate(self, ttft_rps: float) -> Capacity:
        """Capacity when prefill queueing allows ``ttft_rps`` (``_largest_rate``)."""
        rps = min(self.throughput_rps, ttft_rps)
        ttft_ms = self.ttft_quantile(rps)
        concurrency = rps * (ttft_ms + self.output * self.step_ms) / 1e3
        batch, kv_limit = self.batch, self.kv_limit
        if ttft_rps < self.throughput_rps:
            limit: Limit = "ttft"
            reason = f"prefill queueing reaches the TTFT target at {ttft_rps:.2f} rps"
        elif batch >= kv_limit:
            limit, reason = (
                "kv-cache",
                f"KV cache holds {kv_limit} sequences of {self.prompt + self.output} tokens",
            )
        else:
            limit = "itl"
            reason = f"batch {batch + 1} would put ITL above {self.itl_target_ms:g} ms"
        return Capacity(rps, batch, concurrency, self.step_ms, ttft_ms, limit, reason)


def estimate_capacity(
    model: StepModel, slo: LatencyTargets, traffic: TrafficShape, rtt_ms: float = 0.0
) -> Capacity:
    """Capacity of one replica (see the module docstring for the derivation)."""
    loaded = loaded_replica(model, slo.itl_ms, traffic)
    if isinstance(loaded, Capacity):
        return loaded
    return loaded.at_budget(slo.ttft_ms, rtt_ms)


def loaded_replica(
    model: StepModel, itl_target_ms: float, traffic: TrafficShape
) -> LoadedReplica | Capacity:
    """The batch at the ITL target and its prefill queue, or the zero capacity (with its
    reason) when no batch meets the ITL target or fits the KV cache, whatever the TTFT."""
    prompt, output = max(traffic.prompt_tokens, 1), max(traffic.output_tokens, 1)
    context = prompt + output // 2
    prefill_ms = model.prefill_ms(1, prompt)
    prefill_work_ms = max(prefill_ms - model.step_overhead_ms, 1e-3)
    kv_limit = min(model.max_sequences(prompt + output), MAX_BATCH)
    if kv_limit < 1:
        return Capacity(
            0.0,
            0,
            0.0,
            0.0,
            prefill_ms,
            "kv-cache",
            f"no room for one sequence of {prompt + output} tokens in the KV cache",
        )

    def itl_at(batch: int) -> float:
        return _mean_itl(model, batch, context, prefill_work_ms, output)

    single_itl = itl_at(1)
    if single_itl > itl_target_ms:
        return Capacity(
            0.0,
            0,
            0.0,
            single_itl,
            prefill_ms,
            "itl",
            f"ITL {single_itl:.1f} ms at batch 1 exceeds the {itl_target_ms:g} ms target",
        )
    batch = _largest_batch(itl_at, itl_target_ms * ITL_BOOKING, kv_limit)
    step_ms = itl_at(batch)
    decode_ms = model.decode_ms(batch, context)
    saturation_rps = batch / (batch * prefill_work_ms + output * decode_ms) * 1e3
    # A prompt's prefill rides on decode steps of the running batch: it occupies the prefill
    # "server" for its own work plus one batch step per chunk.
    chunks = math.ceil(prompt / model.prefill_chunk_tokens)
    return LoadedReplica(
        itl_target_ms=itl_target_ms,
        prompt=prompt,
        output=output,
        kv_limit=kv_limit,
        batch=batch,
        step_ms=step_ms,
        decode_ms=decode_ms,
        prefill_ms=prefill_ms,
        throughput_rps=SATURATION_HEADROOM * saturation_rps,
        unloaded_ttft_ms=prefill_ms + step_ms / 2,
        chunks=chunks,
        service_ms=prefill_work_ms + chunks * decode_ms,
    )


def _largest_batch(itl_at: Callable[[int], float], itl_booked: float, kv_limit: int) -> int:
    """Largest batch in [1, ``kv_limit``] inside the booked ITL (1 when none is).

    s(B) does not decrease with B, so any search that brackets the last batch inside finds the
    one a gallop-then-bisect finds; s is close to linear in B (a memory-bound step plus a
    per-sequence part), so a guess from its slope and a check of the next batch usually settle
    it in four steps where the gallop and bisection took ~2 log2(B*); after ``_GUESSES`` guesses
    it bisects."""
    low, s_one = 1, itl_at(1)
    s_low, high, s_high = s_one, kv_limit + 1, math.inf  # s(low) fits (or low is 1); high not
    if s_one > itl_booked:
        return 1
    probe, guessed, checked = 2, 0, True
    while high - low > 1:
        s = itl_at(probe)
        fits = s <= itl_booked
        if fits:
            low, s_low = probe, s
        else:
            high, s_high = probe, s
        if guessed >= _GUESSES:
            probe = (low + high) // 2
        elif fits and not checked:
            probe, checked = low + 1, True  # a guess fitted: is it the last batch that does?
        else:
            guessed, checked = guessed + 1, False
            probe = _guess(low, s_low, high, s_high, s_one, itl_booked)
        probe = min(max(probe, low + 1), high - 1)
    return low


# Slope guesses before ``_largest_batch`` bisects: a step that is not linear in the batch (MoE
# expert reads, a compute-bound kink) still ends in ~log2(B*) more steps.
_GUESSES = 3


def _guess(low: int, s_low: float, high: int, s_high: float, s_one: float, booked: float) -> int:
    """Where s crosses ``booked``, on the line through (low, s_low) and (high, s_high), or
    through (1, s(1)) and (low, s_low) while no batch is known past it."""
    if s_high < math.inf:
        return low + int((booked - s_low) * (high - low) / (s_high - s_low))
    slope = (s_low - s_one) / (low - 1)
    if slope <= 0:
        return high - 1
    return low + int(min((booked - s_low) / slope, high))


def _largest_rate(
    ttft_quantile: Callable[[float], float], throughput_rps: float, budget_ms: float
) -> float:
    """Largest rate whose TTFT quantile fits the budget (the quantile grows with the rate)."""
    if ttft_quantile(throughput_rps) <= budget_ms:
        return throughput_rps * 1.000001
    low_rps, high_rps = 0.0, throughput_rps
    for _ in range(40):
        middle_rps = (low_rps + high_rps) / 2
        if ttft_quantile(middle_rps) <= budget_ms:
            low_rps = middle_rps
        else:
            high_rps = middle_rps
    return low_rps
