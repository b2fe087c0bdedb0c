"""The ingest API: probe samples in, one summary row per endpoint pair out.

Owns: ``SampleLog`` (samples from ``LatencyProbes`` documents or from columnar arrays, checked
and interned) and ``PairTable`` (per pair p50/p90/p99, jitter, loss, effective samples, after
decay and expiry). Must not: build the graph or answer RTT queries (``graph.py`` does).

A round trip has no direction: samples from A to B and from B to A pool into the pair {A, B}.
Samples of every method (tcp-connect, tcp-info, icmp) pool too — they measure the same path —
but only active probes count towards the loss ratio (a tcp-info reading is passive: nothing was
sent that could have been lost).
Times are POSIX seconds (naive datetimes read as UTC). A sample with no time (neither its own
``measuredAt`` nor its document's) counts as taken ``now``: full weight, never expired.
``now`` is, unless given, the newest sample time, so an archived probe file reads the same
tomorrow as today.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from gridplace.specs import LatencyProbes
from gridplace.specs.probes import ProbeMethod
from gridplace.topology.errors import ProbeDataError
from gridplace.topology.estimate import Percentile
from gridplace.topology.stats import DecayPolicy, FloatArray, IntArray, grouped_stats

# Same rule as ``gridplace.specs.probes.Endpoint``: a node name, region/<r> or cache/<c>.
ENDPOINT = re.compile(r"^((region|cache)/)?[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
MAX_RTT_MS = 60_000.0


def endpoint_kind(endpoint: str) -> str:
    """'region', 'cache' or 'node'."""
    prefix, _, _ = endpoint.partition("/")
    return prefix if prefix in ("region", "cache") and "/" in endpoint else "node"


def to_posix_s(moment: datetime | None) -> float:
    """POSIX seconds of ``moment`` (naive = UTC); NaN for None (meaning 'now')."""
    if moment is None:
        return float("nan")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class PairTable:
    """One row per endpoint pair seen, columnar; ``lo``/``hi`` index ``endpoints``, lo < hi.

    A pair whose probes were all lost (or whose replies all expired) has ``samples == 0`` and NaN
    percentiles: probed, but unreachable.
    """

    endpoints: tuple[str, ...]
    lo: IntArray
    hi: IntArray
    p50_ms: FloatArray
    p90_ms: FloatArray
    p99_ms: FloatArray
    jitter_ms: FloatArray
    samples: IntArray
    effective_samples: FloatArray
    loss_ratio: FloatArray  # decay-weighted lost / (lost + replies); 0 when nothing was lost
    now_s: float

    def __len__(self) -> int:
        return int(self.lo.shape[0])

    def percentile_ms(self, percentile: Percentile) -> FloatArray:
        return {
            Percentile.P50: self.p50_ms,
            Percentile.P90: self.p90_ms,
            Percentile.P99: self.p99_ms,
        }[percentile]

    @property
    def reachable(self) -> npt.NDArray[np.bool_]:
        return self.samples > 0


class SampleLog:
    """Accumulates probe samples; ``summarize`` turns them into a ``PairTable``."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        # Chunks of (lo, hi, value, time, active): value is an RTT for replies and a count for
        # losses; active is 1.0 where a reply answers a probe that could have been lost (so it
        # counts against losses), 0.0 for passive readings such as TCP_INFO.
        self._replies: list[_Chunk] = []
        self._losses: list[_Chunk] = []

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self._names)

    @property
    def sample_count(self) -> int:
        return sum(int(chunk[2].shape[0]) for chunk in self._replies)

    def _intern(self, names: Sequence[str]) -> IntArray:
        # Check every new name before adding any, so a rejected call leaves the log unchanged.
        for name in names:
            if name not in self._ids and not (isinstance(name, str) and ENDPOINT.match(name)):
                raise ProbeDataError(
                    f"endpoint {name!r} is not a node name, region/<name> or cache/<name>"
                )
        ids = np.empty(len(names), dtype=np.int64)
        for index, name in enumerate(names):
            known = self._ids.get(name)
            if known is None:
                known = self._ids[name] = len(self._names)
                self._names.append(name)
            ids[index] = known
        return ids

    def _pairs(
        self, endpoints: Sequence[str], source: npt.ArrayLike, target: npt.ArrayLike, size: int
    ) -> tuple[IntArray, IntArray]:
        src = np.asarray(source, dtype=np.int64).reshape(-1)
        dst = np.asarray(target, dtype=np.int64).reshape(-1)
        if src.shape[0] != size or dst.shape[0] != size:
            raise ProbeDataError(
                f"source ({src.shape[0]}), target ({dst.shape[0]}) and values ({size}) "
                "must have the same length"
            )
        for label, array in (("source", src), ("target", dst)):
            outside = np.flatnonzero((array < 0) | (array >= len(endpoints)))
            if outside.size:
                raise ProbeDataError(
                    f"{label}[{outside[0]}] = {array[outside[0]]} is not an index into the "
                    f"{len(endpoints)} endpoints"
                )
        same = np.flatnonzero(src == dst)
        if same.size:
            raise ProbeDataError(f"sample {same[0]}: source and target are the same endpoint")
        ids = self._intern(endpoints)
        a, b = ids[src], ids[dst]
        return np.minimum(a, b), np.maximum(a, b)

    @staticmethod
    def _times(measured_at_s: npt.ArrayLike | float | None, size: int) -> FloatArray:
        if measured_at_s is None:
            return np.full(size, np.nan)
        times = np.broadcast_to(np.asarray(measured_at_s, dtype=np.float64), (size,)).copy()
        if np.isinf(times).any():
            raise ProbeDataError("measured_at_s must be finite (NaN means 'now')")
        return times

    def add_arrays(
        self,
        endpoints: Sequence[str],
        source: npt.ArrayLike,
        target: npt.ArrayLike,
        rtt_ms: npt.ArrayLike,
        measured_at_s: npt.ArrayLike | float | None = None,
        *,
        passive: bool = False,
    ) -> int:
        """Add replies in columnar form: sample i went ``endpoints[source[i]]`` <->
        ``endpoints[target[i]]`` and took ``rtt_ms[i]`` at POSIX time ``measured_at_s[i]``
        (one float for all, or None for 'now'). Returns how many were added.

        ``passive`` readings (the kernel's RTT of a live connection) count in the RTT
        statistics but not in the loss ratio: no probe was sent that could have been lost.
        """
        rtt = np.asarray(rtt_ms, dtype=np.float64).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(rtt) | (rtt < 0) | (rtt > MAX_RTT_MS))
        if bad.size:
            raise ProbeDataError(
                f"rtt_ms[{bad[0]}] = {rtt[bad[0]]!r}: an RTT must be a number from 0 to "
                f"{MAX_RTT_MS:g} ms ({bad.size} such value(s))"
            )
        lo, hi = self._pairs(endpoints, source, target, rtt.shape[0])
        times = self._times(measured_at_s, rtt.shape[0])
        active = np.full(rtt.shape[0], 0.0 if passive else 1.0)
        self._replies.append((lo, hi, rtt.copy(), times, active))
        return int(rtt.shape[0])

    def add_lost(
        self,
        endpoints: Sequence[str],
        source: npt.ArrayLike,
        target: npt.ArrayLike,
        lost: npt.ArrayLike,
        measured_at_s: npt.ArrayLike | float | None = None,
    ) -> None:
        """Add counts of unanswered probes per (source, target), same layout as ``add_arrays``."""
        count = np.asarray(lost, dtype=np.float64).reshape(-1)
        if (~np.isfinite(count) | (count < 0)).any():
            raise ProbeDataError("lost counts must be whole numbers >= 0")
        lo, hi = self._pairs(endpoints, source, target, count.shape[0])
        times = self._times(measured_at_s, count.shape[0])
        self._losses.append((lo, hi, count, times, np.ones(count.shape[0])))

    def add_probes(self, probes: LatencyProbes | Iterable[LatencyProbes]) -> int:
        """Add every sample of one or more validated ``LatencyProbes`` documents."""
        documents = [probes] if isinstance(probes, LatencyProbes) else list(probes)
        added = 0
        for document in documents:
            default_s = to_posix_s(document.spec.measured_at)
            names: list[str] = []
            # Columns per kind of row: active replies, passive replies, losses.
            columns: dict[str, tuple[list[int], list[int], list[float], list[float]]] = {
                kind: ([], [], [], []) for kind in ("active", "passive", "lost")
            }
            for sample in document.spec.samples:
                when = default_s if sample.measured_at is None else to_posix_s(sample.measured_at)
                s, t = len(names), len(names) + 1
                names += (sample.source, sample.target)
                kind = "passive" if sample.method is ProbeMethod.TCP_INFO else "active"
                src, dst, values, times = columns[kind]
                src += [s] * len(sample.rtt_ms)
                dst += [t] * len(sample.rtt_ms)
                values += sample.rtt_ms
                times += [when] * len(sample.rtt_ms)
                if sample.lost:
                    src, dst, values, times = columns["lost"]
                    src.append(s)
                    dst.append(t)
                    values.append(float(sample.lost))
                    times.append(when)
            for kind in ("active", "passive"):
                if columns[kind][0]:
                    added += self.add_arrays(names, *columns[kind], passive=kind == "passive")
            if columns["lost"][0]:
                self.add_lost(names, *columns["lost"])
        return added

    def summarize(self, policy: DecayPolicy | None = None, now_s: float | None = None) -> PairTable:
        """Decay, expire and summarise every pair (see ``stats`` for the definitions)."""
        policy = policy or DecayPolicy()
        replies = _concat(self._replies)
        losses = _concat(self._losses)
        if now_s is None:
            stamped = np.concatenate([replies[3], losses[3]])
            stamped = stamped[~np.isnan(stamped)]
            now_s = float(stamped.max()) if stamped.size else 0.0
        n = max(len(self._names), 1)
        reply_w, reply_keep = policy.weights(now_s - replies[3])
        loss_w, loss_keep = policy.weights(now_s - losses[3])
        # Only pairs with a kept sample get a row: a pair whose samples all expired is unknown
        # again (estimated), not 'unreachable' — we no longer know anything about it.
        codes = np.concatenate([replies[0] * n + replies[1], losses[0] * n + losses[1]])
        keep = np.concatenate([reply_keep, loss_keep])
        pair_codes, inverse = np.unique(codes[keep], return_inverse=True)
        reply_group = inverse[: int(reply_keep.sum())]
        loss_group = inverse[int(reply_keep.sum()) :]
        groups = int(pair_codes.shape[0])
        stats = grouped_stats(reply_group, replies[2][reply_keep], reply_w[reply_keep], groups)
        lost_weight = np.bincount(
            loss_group, weights=(losses[2] * loss_w)[loss_keep], minlength=groups
        )
        answered_weight = np.bincount(
            reply_group, weights=(replies[4] * reply_w)[reply_keep], minlength=groups
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            loss_ratio = np.where(
                lost_weight > 0, lost_weight / (lost_weight + answered_weight), 0.0
            )
        return PairTable(
            endpoints=tuple(self._names),
            lo=pair_codes // n,
            hi=pair_codes % n,
            p50_ms=stats.p50_ms,
            p90_ms=stats.p90_ms,
            p99_ms=stats.p99_ms,
            jitter_ms=stats.jitter_ms,
            samples=stats.samples,
            effective_samples=stats.effective_samples,
            loss_ratio=loss_ratio,
            now_s=now_s,
        )


_Chunk = tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]


def _concat(chunks: list[_Chunk]) -> _Chunk:
    if not chunks:
        empty_i = np.empty(0, dtype=np.int64)
        return empty_i, empty_i, np.empty(0), np.empty(0), np.empty(0)
    return (
        np.concatenate([c[0] for c in chunks]),
        np.concatenate([c[1] for c in chunks]),
        np.concatenate([c[2] for c in chunks]),
        np.concatenate([c[3] for c in chunks]),
        np.concatenate([c[4] for c in chunks]),
    )
