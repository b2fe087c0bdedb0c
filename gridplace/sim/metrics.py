"""What a run measured: per-request figures and their per-workload summary.

Owns: ``SimResult`` (one row per request), the SLA definition and the summary figures. Must not:
simulate anything.

SLA: a request meets it when it finished, its TTFT (as the client sees it, network included) is
at most the workload's ``ttftMs`` and its mean ITL — (last token - first token) / (output - 1),
the rate a streaming client reads at — is at most ``itlMs``. A one-token answer meets the ITL
target trivially. Lost and unfinished requests miss. Percentiles are over all requests sent, a
missing figure counting as infinite (so "p99 inf" means more than 1 % never got there); they
are order statistics (``inverted_cdf``), never interpolated.

Stalls: streaming users feel the longest pause, not the mean. A completed request stalled when
its largest gap between two tokens exceeded ``STALL_FACTOR`` x its ITL target; ``stall_share`` is
the share of completed requests that did (reported beside the SLA, not part of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
STATUS_DONE, STATUS_LOST, STATUS_UNFINISHED = 1, 2, 3
STALL_FACTOR = 2.0


@dataclass(frozen=True)
class WorkloadInfo:
    name: str
    ttft_slo_ms: float
    itl_slo_ms: float
    cost_per_hour: float
    replicas: int


@dataclass(frozen=True)
class WorkloadSummary:
    name: str
    requests: int
    met: int
    lost: int  # lost or unfinished
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    throughput_rps: float  # completed requests per second of the run
    output_tokens_per_s: float
    cost_per_hour: float
    replicas: int
    ttft_slo_ms: float
    itl_slo_ms: float
    stall_share: float = 0.0

    @property
    def attainment(self) -> float:
        return self.met / self.requests if self.requests else 1.0

    @property
    def violations(self) -> int:
        return self.requests - self.met

    def as_dict(self) -> dict[str, object]:
        return {
            "workload": self.name,
            "requests": self.requests,
            "slaAttainment": round(self.attainment, 6),
            "violations": self.violations,
            "lost": self.lost,
            "ttftP50Ms": _json_ms(self.ttft_p50_ms),
            "ttftP99Ms": _json_ms(self.ttft_p99_ms),
            "itlP50Ms": _json_ms(self.itl_p50_ms),
            "itlP99Ms": _json_ms(self.itl_p99_ms),
            "ttftSloMs": self.ttft_slo_ms,
            "itlSloMs": self.itl_slo_ms,
            "stallShare": round(self.stall_share, 6),
            "throughputRps": round(self.throughput_rps, 4),
            "outputTokensPerS": round(self.output_tokens_per_s, 1),
            "replicas": self.replicas,
            "costPerHour": round(self.cost_per_hour, 4),
        }


def _json_ms(value: float) -> float | None:
    return round(value, 2) if np.isfinite(value) else None


@dataclass(frozen=True)
class SimResult:
    """One row per request sent (arrays aligned), and what the run cost."""

    workloads: tuple[WorkloadInfo, ...]
    replica_labels: tuple[str, ...]
    duration_s: float
    workload: IntArray
    region: IntArray
    sent_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    replica: IntArray  # -1: no replica could take it
    status: IntArray  # replica.Status
    ttft_ms: FloatArray  # inf when no first token
    itl_mean_ms: FloatArray  # inf unless done
    itl_max_ms: FloatArray  # longest gap between two of its tokens; inf unless done
    e2e_ms: FloatArray  # send to last token at the client; inf unless done
    steps: int  # engine steps simulated, all replicas
    wall_s: float
    # (replica, cold start began, serving, the node loss that caused it): restarts after a node
    # came back and standbys started after a failure (``coldstart.ColdStartReport``)
    cold_starts: tuple[tuple[int, float, float, float], ...] = ()
    replica_workloads: tuple[int, ...] = ()  # each replica's workload (labels' order)
    # Per replica, window index -> replica.WindowStats (only when run with ``window_s``).
    replica_windows: tuple[Mapping[int, Any], ...] = ()

    def met(self) -> npt.NDArray[np.bool_]:
        """Which requests met their workload's SLA (see the module docstring)."""
        ttft_slo = np.array([w.ttft_slo_ms for w in self.workloads])[self.workload]
        itl_slo = np.array([w.itl_slo_ms for w in self.workloads])[self.workload]
        met: npt.NDArray[np.bool_] = (
            (self.status == STATUS_DONE)
            & (self.ttft_ms <= ttft_slo)
            & (self.itl_mean_ms <= itl_slo)
        )
        return met

    def stalled(self) -> npt.NDArray[np.bool_]:
        """Completed requests whose largest token gap exceeded ``STALL_FACTOR`` x ITL target."""
        itl_slo = np.array([w.itl_slo_ms for w in self.workloads])[self.workload]
        stalled: npt.NDArray[np.bool_] = (self.status == STATUS_DONE) & (
            self.itl_max_ms > STALL_FACTOR * itl_slo
        )
        return stalled

    def misses(self) -> dict[str, int]:
        """Why requests missed: late first token only, slow tokens only, both, or never done."""
        ttft_slo = np.array([w.ttft_slo_ms for w in self.workloads])[self.workload]
        itl_slo = np.array([w.itl_slo_ms for w in self.workloads])[self.workload]
        done = self.status == STATUS_DONE
        late = done & (self.ttft_ms > ttft_slo)
        slow = done & (self.itl_mean_ms > itl_slo)
        return {
            "ttftOnly": int((late & ~slow).sum()),
            "itlOnly": int((slow & ~late).sum()),
            "both": int((late & slow).sum()),
            "lost": int((self.status == STATUS_LOST).sum()),
            "unfinished": int((self.status == STATUS_UNFINISHED).sum()),
        }

    def summary(self) -> list[WorkloadSummary]:
        met = self.met()
        stalled = self.stalled()
        rows = []
        for index, info in enumerate(self.workloads):
            mine = self.workload == index
            done = mine & (self.status == STATUS_DONE)
            rows.append(
                WorkloadSummary(
                    name=info.name,
                    requests=int(mine.sum()),
                    met=int((met & mine).sum()),
                    lost=int((mine & (self.status != STATUS_DONE)).sum()),
                    ttft_p50_ms=percentile(self.ttft_ms[mine], 50),
                    ttft_p99_ms=percentile(self.ttft_ms[mine], 99),
                    itl_p50_ms=percentile(self.itl_mean_ms[mine], 50),
                    itl_p99_ms=percentile(self.itl_mean_ms[mine], 99),
                    throughput_rps=float(done.sum()) / self.duration_s,
                    output_tokens_per_s=float(self.output_tokens[done].sum()) / self.duration_s,
                    cost_per_hour=info.cost_per_hour,
                    replicas=info.replicas,
                    ttft_slo_ms=info.ttft_slo_ms,
                    itl_slo_ms=info.itl_slo_ms,
                    stall_share=_share(stalled, done),
                )
            )
        return rows

    def total(self) -> Totals:
        """Request-weighted figures over every workload."""
        met = self.met()
        ttft_slo = np.array([w.ttft_slo_ms for w in self.workloads])[self.workload]
        itl_slo = np.array([w.itl_slo_ms for w in self.workloads])[self.workload]
        return Totals(
            requests=len(met),
            met=int(met.sum()),
            lost=int((self.status != STATUS_DONE).sum()),
            ttft_p99_ratio=percentile(self.ttft_ms / ttft_slo, 99),
            itl_p99_ratio=percentile(self.itl_mean_ms / itl_slo, 99),
            cost_per_hour=sum(w.cost_per_hour for w in self.workloads),
            stall_share=_share(self.stalled(), self.status == STATUS_DONE),
        )


@dataclass(frozen=True)
class Totals:
    requests: int
    met: int
    lost: int
    ttft_p99_ratio: float  # p99 of TTFT / its workload's target, all requests
    itl_p99_ratio: float  # p99 of mean ITL / its workload's target
    cost_per_hour: float
    stall_share: float = 0.0  # of completed requests (see the module docstring)

    @property
    def attainment(self) -> float:
        return self.met / self.requests if self.requests else 1.0

    @property
    def violations(self) -> int:
        return self.requests - self.met


def _share(flags: npt.NDArray[np.bool_], among: npt.NDArray[np.bool_]) -> float:
    count = int(among.sum())
    return float((flags & among).sum()) / count if count else 0.0


def percentile(values: FloatArray, q: float) -> float:
    """An order statistic (infinite entries allowed); NaN for no values."""
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(values, q, method="inverted_cdf"))
