"""Latency at demand: what a plan's replicas are expected to show at the load the demand puts on
them, beside the full-load figures they were booked at.

Owns the queueing arithmetic at a given load; must not decide capacity (``perfmodel.capacity``
does, at the SLO's quantile and full booked load). The demand of a workload is routed to its
replicas in proportion to their capacity. At a replica's load lambda, with the figures of its
``Queueing`` (network excluded):
- prefill queue load rho = lambda x service time; the wait in queue has the M/M/1 tail
  P(wait > t) = rho exp(-(1 - rho) t / service) (conservative against M/D/1, as capacity uses it),
  so its q-quantile is service / (1 - rho) x ln(rho / (1 - q)) when rho > 1 - q, else 0;
- TTFT p50 / p99 = TTFT at zero load + the wait's quantile + the worst servable source's RTT;
- ITL = ITL at batch 1 + (the booked ITL - that) x lambda / capacity (the batch, and with it the
  step time, grows about linearly with the load, Little's law).
"""

from __future__ import annotations

from gridplace.planner.perfmodel import capacity
from gridplace.planner.problem import Option
from gridplace.specs.plan import LatencyAtDemand

MAX_RHO = 0.999


def wait_quantile_ms(rho: float, service_ms: float, quantile: float) -> float:
    """The ``quantile`` of the wait at load ``rho`` (capacity's M/M/1 tail), ``rho`` held
    below 1 (a replica at full booked load)."""
    return capacity.wait_quantile_ms(min(rho, MAX_RHO), service_ms, quantile)


def latency_at(option: Option, load_rps: float) -> LatencyAtDemand | None:
    """Expected latency of one replica of ``option`` serving ``load_rps``; None when the
    predictor gave no queueing figures."""
    queueing = option.queueing
    if queueing is None or option.capacity_rps <= 0:
        return None
    network_ms = max(option.ttft_ms[r] for r in option.servable_sources) - queueing.booked_ttft_ms
    rho = load_rps * queueing.service_ms / 1000

    def ttft(quantile: float) -> float:
        wait = wait_quantile_ms(rho, queueing.service_ms, quantile)
        return queueing.unloaded_ttft_ms + wait + network_ms

    load = min(1.0, load_rps / option.capacity_rps)
    itl = queueing.unloaded_itl_ms + (option.itl_ms - queueing.unloaded_itl_ms) * load
    return LatencyAtDemand(
        load_rps=round(load_rps, 3),
        ttft_p50_ms=round(ttft(0.5), 1),
        ttft_p99_ms=round(ttft(0.99), 1),
        itl_ms=round(itl, 2),
    )
