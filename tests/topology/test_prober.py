"""The prober against real loopback sockets: a listener, a refused port and a blackhole within
its timeout; results as a LatencyProbes document that round-trips through the specs loader."""

from __future__ import annotations

import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from gridplace.specs import load_bundle
from gridplace.specs.probes import ProbeMethod
from gridplace.topology import SampleLog
from gridplace.topology.peers import Peer
from gridplace.topology.prober import (
    PeerResult,
    ProbeSettings,
    kernel_rtt_ms,
    run_probes,
    to_latency_probes,
)
from tests.topology.sockets import LOOPBACK, blackholed_port, closed_port, listening_port

FAST = {"interval_s": 0.0}


def test_a_listening_peer_answers_every_probe() -> None:
    with listening_port() as port:
        (result,) = run_probes([Peer("up", LOOPBACK, port)], ProbeSettings(count=3, **FAST))
    assert result.reachable
    assert len(result.connect_rtt_ms) == 3
    assert all(0 < rtt < 1000 for rtt in result.connect_rtt_ms)
    assert (result.lost, result.error) == (0, None)
    if sys.platform == "linux":
        # The kernel's smoothed RTT of a loopback handshake: present, tiny, never above the
        # user-space figure by more than scheduling noise.
        assert len(result.kernel_rtt_ms) == 3
        assert all(0 < rtt < 100 for rtt in result.kernel_rtt_ms)


def test_a_closed_port_is_lost_as_refused_and_fast() -> None:
    with closed_port() as port:
        started = time.monotonic()
        (result,) = run_probes(
            [Peer("down", LOOPBACK, port)], ProbeSettings(count=3, timeout_s=5.0, **FAST)
        )
    assert time.monotonic() - started < 2.0  # a refusal does not wait for the timeout
    assert not result.reachable
    assert result.connect_rtt_ms == []
    assert (result.lost, result.error) == (3, "connection refused")


@pytest.mark.skipif(sys.platform != "linux", reason="accept-queue overflow drops SYNs on Linux")
def test_a_blackholed_peer_times_out_within_its_timeout() -> None:
    timeout_s = 0.3
    with blackholed_port() as port:
        started = time.monotonic()
        (result,) = run_probes(
            [Peer("hole", LOOPBACK, port)], ProbeSettings(count=2, timeout_s=timeout_s, **FAST)
        )
        elapsed = time.monotonic() - started
    assert 2 * timeout_s <= elapsed < 2 * timeout_s + 1.0
    assert (result.lost, result.error) == (2, "timed out after 0.3 s")
    assert result.connect_rtt_ms == []


@pytest.mark.skipif(sys.platform != "linux", reason="accept-queue overflow drops SYNs on Linux")
def test_peers_are_probed_concurrently_and_reported_in_order() -> None:
    timeout_s = 0.4
    with blackholed_port() as hole, listening_port() as up, closed_port() as down:
        peers = [Peer(f"hole-{i}", LOOPBACK, hole) for i in range(4)]
        peers += [Peer("up", LOOPBACK, up), Peer("down", LOOPBACK, down)]
        started = time.monotonic()
        results = run_probes(peers, ProbeSettings(count=1, timeout_s=timeout_s, concurrency=8))
        elapsed = time.monotonic() - started
    assert [r.peer.name for r in results] == [p.name for p in peers]
    assert elapsed < 4 * timeout_s  # four timeouts in parallel, not in a row
    assert [r.reachable for r in results] == [False] * 4 + [True, False]


@pytest.mark.skipif(sys.platform != "linux", reason="accept-queue overflow drops SYNs on Linux")
def test_concurrency_one_probes_peers_one_after_another() -> None:
    with blackholed_port() as hole:
        started = time.monotonic()
        run_probes(
            [Peer("h1", LOOPBACK, hole), Peer("h2", LOOPBACK, hole)],
            ProbeSettings(count=1, timeout_s=0.25, concurrency=1),
        )
        assert time.monotonic() - started >= 0.5


def test_kernel_rtt_is_none_for_a_socket_without_tcp_info() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert kernel_rtt_ms(udp) is None


@pytest.mark.parametrize(
    "kwargs", [{"count": 0}, {"timeout_s": 0}, {"concurrency": 0}, {"interval_s": -1}]
)
def test_probe_settings_reject_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ProbeSettings(**kwargs)  # type: ignore[arg-type]


def test_results_round_trip_through_yaml_and_the_specs_loader(tmp_path: Path) -> None:
    results = [
        PeerResult(Peer("up", LOOPBACK, 1), [1.5, 2.25], [0.125, 0.25], lost=1, error="timed out"),
        PeerResult(Peer("cache/down", LOOPBACK, 2), lost=3, error="connection refused"),
    ]
    moment = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    document = to_latency_probes(results, "region/eu-west", moment)
    path = tmp_path / "probes.yaml"
    path.write_text(yaml.safe_dump(document.to_yaml_dict(), sort_keys=False))
    (loaded,) = load_bundle([path]).probes
    assert loaded == document
    assert loaded.metadata.name == "probes-region-eu-west-20261127t083000"
    samples = loaded.spec.samples
    assert [(s.target, s.method, s.rtt_ms, s.lost) for s in samples] == [
        ("up", ProbeMethod.TCP_CONNECT, [1.5, 2.25], 1),
        ("up", ProbeMethod.TCP_INFO, [0.125, 0.25], 0),
        ("cache/down", ProbeMethod.TCP_CONNECT, [], 3),
    ]
    log = SampleLog()
    assert log.add_probes(loaded) == 4
    table = log.summarize()
    assert table.samples.sum() == 4
    # One of three active probes to 'up' was lost; its tcp-info readings do not dilute that.
    assert sorted(table.loss_ratio.tolist()) == [pytest.approx(1 / 3), 1.0]
