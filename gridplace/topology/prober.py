"""The active prober: TCP-connect RTT to peers, concurrently, and the kernel's smoothed RTT.

Owns: measuring round trips from this machine to ``Peer`` host:port targets with asyncio and
turning the results into a ``LatencyProbes`` document. Must not: send anything but TCP
handshakes to the peers it is given (no payload: connect, read TCP_INFO, close), or raise for an
unreachable peer — that is a result (``lost``, ``error``).

Each probe resolves the host once (DNS time is not RTT), then times ``connect()`` — the SYN to
SYN-ACK round trip plus the local scheduling around it — with ``time.perf_counter``. On Linux it
then reads ``TCP_INFO`` of the live connection: ``tcpi_rtt``, the kernel's smoothed RTT in
microseconds (what eBPF TCP probes report), taken passively from the handshake, without extra
traffic. Both go into the document as separate samples (methods ``tcp-connect`` and ``tcp-info``).

A refused connection, a timeout and a resolution failure each count the probe as lost and keep
the last reason in ``error``; a peer with no answer at all is written with ``rttMs: []`` and
``lost: COUNT``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gridplace.specs import LatencyProbes, Metadata, ProbeSample
from gridplace.specs.probes import LatencyProbesSpec, ProbeMethod
from gridplace.topology.peers import Peer

# struct tcp_info (linux/tcp.h): 8 one-byte fields, then u32s; tcpi_rtt is the 16th u32 (offset
# 68), microseconds. 104 bytes covers every kernel since 2.6; newer ones return more.
TCP_INFO_BYTES = 104
TCPI_RTT_OFFSET = 68
TCP_INFO = getattr(socket, "TCP_INFO", None)  # None off Linux: no kernel RTT then


@dataclass(frozen=True)
class ProbeSettings:
    """How to probe: ``count`` connects per peer, each given ``timeout_s``, ``concurrency``
    peers at a time, ``interval_s`` between one peer's probes."""

    count: int = 5
    timeout_s: float = 2.0
    concurrency: int = 32
    interval_s: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 1000:
            raise ValueError(f"count must be 1..1000, got {self.count}")
        if not 0 < self.timeout_s <= 600:
            raise ValueError(f"timeout must be > 0 and <= 600 s, got {self.timeout_s}")
        if not 1 <= self.concurrency <= 4096:
            raise ValueError(f"concurrency must be 1..4096, got {self.concurrency}")
        if not 0 <= self.interval_s <= 60:
            raise ValueError(f"interval must be 0..60 s, got {self.interval_s}")


@dataclass
class PeerResult:
    """What probing one peer gave."""

    peer: Peer
    connect_rtt_ms: list[float] = field(default_factory=list)
    kernel_rtt_ms: list[float] = field(default_factory=list)  # tcpi_rtt, where readable
    lost: int = 0
    error: str | None = None  # the last failure's reason

    @property
    def reachable(self) -> bool:
        return bool(self.connect_rtt_ms)


def kernel_rtt_ms(sock: socket.socket) -> float | None:
    """The kernel's smoothed RTT of a connected TCP socket (ms), or None where unavailable."""
    if TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_BYTES)
    except OSError:
        return None
    if len(info) < TCPI_RTT_OFFSET + 4:
        return None
    (rtt_us,) = struct.unpack_from("=I", info, TCPI_RTT_OFFSET)
    return rtt_us / 1000.0 if rtt_us else None  # 0: no RTT sample yet


def _reason(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host: {error.strerror or error}"
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return type(error).__name__


async def probe_peer(peer: Peer, settings: ProbeSettings) -> PeerResult:
    """Probe one peer ``settings.count`` times; never raises for network failures."""
    loop = asyncio.get_running_loop()
    result = PeerResult(peer)
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM), settings.timeout_s
        )
    except (OSError, TimeoutError) as error:
        result.lost, result.error = settings.count, _reason(error, settings.timeout_s)
        return result
    family, kind, proto, _, address = infos[0]
    for attempt in range(settings.count):
        if attempt:
            await asyncio.sleep(settings.interval_s)
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            started = time.perf_counter()
            await asyncio.wait_for(loop.sock_connect(sock, address), settings.timeout_s)
            result.connect_rtt_ms.append((time.perf_counter() - started) * 1e3)
            kernel = kernel_rtt_ms(sock)
            if kernel is not None:
                result.kernel_rtt_ms.append(kernel)
        except (OSError, TimeoutError) as error:
            result.lost += 1
            result.error = _reason(error, settings.timeout_s)
        finally:
            sock.close()
    return result


async def probe_peers(
    peers: Sequence[Peer],
    settings: ProbeSettings,
    on_result: Callable[[PeerResult], None] | None = None,
) -> list[PeerResult]:
    """Probe every peer, at most ``settings.concurrency`` at a time; results in peers order."""
    gate = asyncio.Semaphore(settings.concurrency)

    async def guarded(peer: Peer) -> PeerResult:
        async with gate:
            result = await probe_peer(peer, settings)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(guarded(peer) for peer in peers)))


def run_probes(
    peers: Sequence[Peer],
    settings: ProbeSettings,
    on_result: Callable[[PeerResult], None] | None = None,
) -> list[PeerResult]:
    """``probe_peers`` from synchronous code."""
    return asyncio.run(probe_peers(peers, settings, on_result))


def to_latency_probes(
    results: Sequence[PeerResult], source: str, measured_at: datetime | None = None
) -> LatencyProbes:
    """A ``LatencyProbes`` document of the results, measured from ``source``."""
    measured_at = measured_at or datetime.now(UTC)
    samples: list[ProbeSample] = []
    for result in results:
        connect_ms = [round(value, 3) for value in result.connect_rtt_ms]
        samples.append(
            ProbeSample(
                source=source,
                target=result.peer.name,
                rtt_ms=connect_ms,
                lost=result.lost,
                method=ProbeMethod.TCP_CONNECT,
                error=result.error[:500] if result.error else None,
            )
        )
        if result.kernel_rtt_ms:
            samples.append(
                ProbeSample(
                    source=source,
                    target=result.peer.name,
                    rtt_ms=[round(value, 3) for value in result.kernel_rtt_ms],
                    method=ProbeMethod.TCP_INFO,
                )
            )
    stamp = measured_at.astimezone(UTC).strftime("%Y%m%dt%H%M%S")
    base = re.sub(r"[^a-z0-9._-]", "-", source.lower())[: 63 - len(stamp) - 8].strip("-._")
    return LatencyProbes(
        metadata=Metadata(name=f"probes-{base}-{stamp}" if base else f"probes-{stamp}"),
        spec=LatencyProbesSpec(measured_at=measured_at, samples=samples),
    )


def default_source() -> str:
    """This machine's name as an endpoint: the host name, lowercased, odd characters as '-'."""
    name = socket.gethostname().split(".")[0].lower()
    return re.sub(r"[^a-z0-9._-]", "-", name).strip("-._")[:63] or "localhost"


__all__ = [
    "PeerResult",
    "ProbeSettings",
    "default_source",
    "kernel_rtt_ms",
    "probe_peer",
    "probe_peers",
    "run_probes",
    "to_latency_probes",
]
