"""``Topology``: measured, path-estimated, region-default and fallback pairs; the planner's lookup
agreeing with per-pair queries; expiry; nearest; cold start; sites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridplace.specs import load_bundle
from gridplace.topology import (
    DecayPolicy,
    Percentile,
    RttBasis,
    UnknownEndpointError,
    WeightsCache,
    builtin_regions,
)
from gridplace.topology.coldstart import ORIGIN, PARALLEL_STREAMS, TCP_WINDOW_BYTES
from gridplace.topology.estimate import (
    DEFAULT_TAIL_FACTOR,
    FALLBACK_RTT_MS,
    LAST_MILE_MS,
    MIN_REGION_DEFAULT_MARGIN_MS,
)
from gridplace.topology.graph import Topology
from tests.conftest import EXAMPLES
from tests.topology.helpers import node, probes, sample

EXACT = DecayPolicy(half_life_s=None, max_age_s=None)


@pytest.fixture
def small() -> Topology:
    """a, b in eu-west; c in us-east; d in eu-central (never probed); m in an unknown region."""
    nodes = [
        node("a", "eu-west"),
        node("b", "eu-west"),
        node("c", "us-east"),
        node("d", "eu-central"),
        node("m", "mars-base"),
    ]
    document = probes(
        sample("a", "b", 4, 5, 6),
        sample("c", "b", 84, 80, 82),
        sample("region/eu-west", "a", 10, 11, 12),
        sample("a", "c", lost=3, error="timed out after 2 s"),
    )
    return Topology.build(nodes, document, policy=EXACT)


def test_a_probed_pair_is_measured_in_both_directions(small: Topology) -> None:
    forward = small.rtt_ms("a", "b")
    backward = small.rtt_ms("b", "a", "p50")
    assert forward == backward
    assert (forward.value_ms, forward.basis, forward.hops) == (5.0, RttBasis.MEASURED, 1)
    assert forward.measured and not forward.estimated
    assert forward.loss_ratio == 0.0
    assert small.rtt_ms("a", "b", Percentile.P90).value_ms == 6.0


def test_a_never_probed_pair_is_the_shortest_measured_path(small: Topology) -> None:
    estimate = small.rtt_ms("region/eu-west", "c")
    assert estimate.basis is RttBasis.PATH and estimate.estimated
    assert estimate.value_ms == 11 + 5 + 82
    assert estimate.hops == 3
    assert small.rtt_ms("region/eu-west", "c", "p99").value_ms == 12 + 6 + 84
    measured_margins = [
        small.rtt_ms(*pair).margin_ms for pair in (("region/eu-west", "a"), ("a", "b"), ("b", "c"))
    ]
    assert estimate.margin_ms > sum(measured_margins)  # wider than its hops together


def test_a_probed_but_unreachable_pair_is_estimated_and_carries_its_loss(small: Topology) -> None:
    estimate = small.rtt_ms("a", "c")
    assert estimate.basis is RttBasis.PATH
    assert estimate.value_ms == 5 + 82
    assert estimate.loss_ratio == 1.0


def test_an_unconnected_node_gets_the_region_default(small: Topology) -> None:
    backbone = builtin_regions().backbone_ms("eu-west", "eu-central")
    assert backbone is not None
    estimate = small.rtt_ms("a", "d")
    assert estimate.basis is RttBasis.REGION_DEFAULT
    assert estimate.value_ms == pytest.approx(backbone + 2 * LAST_MILE_MS)
    assert estimate.margin_ms >= MIN_REGION_DEFAULT_MARGIN_MS
    assert estimate.margin_ms > small.rtt_ms("a", "b").margin_ms
    tail = small.rtt_ms("a", "d", Percentile.P99).value_ms
    assert tail == pytest.approx(
        (backbone + 2 * LAST_MILE_MS) * DEFAULT_TAIL_FACTOR[Percentile.P99]
    )


def test_an_unprobed_client_region_is_answered_from_the_table(small: Topology) -> None:
    backbone = builtin_regions().backbone_ms("ap-south", "us-east")
    assert backbone is not None
    estimate = small.rtt_ms("region/ap-south", "c")
    assert estimate.basis is RttBasis.REGION_DEFAULT
    assert estimate.value_ms == pytest.approx(backbone + LAST_MILE_MS)


def test_an_unknown_region_pair_falls_back_conservatively(small: Topology) -> None:
    estimate = small.rtt_ms("a", "m")
    assert estimate.basis is RttBasis.FALLBACK
    assert estimate.value_ms == FALLBACK_RTT_MS
    assert estimate.value_ms > max(builtin_regions().rtt_ms_by_pair.values())


def test_same_endpoint_is_zero(small: Topology) -> None:
    assert small.rtt_ms("a", "a").value_ms == 0.0


@pytest.mark.parametrize("endpoint", ["zz", "cache/nowhere", "Not A Name", "bb"])
def test_unknown_endpoints_are_rejected_with_a_hint(small: Topology, endpoint: str) -> None:
    with pytest.raises(UnknownEndpointError, match="unknown endpoint") as caught:
        small.rtt_ms("a", endpoint)
    assert caught.value.endpoint == endpoint
    if endpoint == "bb":
        assert "did you mean b" in str(caught.value)


def test_the_lookup_agrees_with_every_pair_query(small: Topology) -> None:
    lookup = small.latency_lookup()
    assert set(lookup.nodes) == {"a", "b", "c", "d", "m"}
    assert {"eu-west", "us-east", "mars-base"} <= set(lookup.regions)
    bases = set()
    for region in lookup.regions:
        for name in lookup.nodes:
            for percentile in Percentile:
                fast = lookup.rtt_ms(region, name, percentile)
                slow = small.rtt_ms(f"region/{region}", name, percentile)
                assert fast.basis is slow.basis, (region, name)
                assert fast.value_ms == pytest.approx(slow.value_ms), (region, name, percentile)
                assert fast.margin_ms == pytest.approx(slow.margin_ms), (region, name)
                assert fast.hops == slow.hops
                bases.add(fast.basis)
    assert bases == set(RttBasis)  # the fixture exercises every kind of answer
    row = lookup.row_ms("eu-west", Percentile.P90)
    assert row.tolist() == [lookup.value_ms("eu-west", n, Percentile.P90) for n in lookup.nodes]


def test_the_lookup_answers_regions_it_was_not_built_for(small: Topology) -> None:
    lookup = small.latency_lookup(["eu-west"])
    assert lookup.regions == ("eu-west",)
    assert lookup.rtt_ms("us-east", "c") == small.rtt_ms("region/us-east", "c")
    assert lookup.rtt_ms("nowhere", "a").basis is RttBasis.FALLBACK
    assert lookup.row_ms("us-east").shape == (len(lookup.nodes),)
    with pytest.raises(UnknownEndpointError):
        lookup.rtt_ms("eu-west", "zz")


def test_the_lookup_is_read_only(small: Topology) -> None:
    lookup = small.latency_lookup()
    with pytest.raises(ValueError, match="read-only"):
        lookup.rtt_ms_by_percentile[Percentile.P50][0, 0] = 1.0


def test_expired_samples_turn_a_measured_pair_into_an_estimate() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    document = probes(
        sample("a", "b", 5, measuredAt=(now - timedelta(days=10)).isoformat()),
        sample("a", "c", 7),
    )
    nodes = [node("a", "eu-west"), node("b", "eu-west"), node("c", "eu-west")]
    fresh = Topology.build(nodes, document, policy=DecayPolicy(max_age_s=None), now=now)
    stale = Topology.build(nodes, document, policy=DecayPolicy(max_age_s=7 * 86_400.0), now=now)
    assert fresh.rtt_ms("a", "b").basis is RttBasis.MEASURED
    assert stale.rtt_ms("a", "b").basis is RttBasis.REGION_DEFAULT
    assert stale.rtt_ms("a", "c").basis is RttBasis.MEASURED


def test_nearest_sorts_by_rtt_then_name(small: Topology) -> None:
    ranked = small.nearest("a", k=3)
    # d (eu-central, a region default of ~20 ms) is nearer than c (a path through b, 87 ms).
    assert [name for name, _ in ranked] == ["b", "d", "c"]
    assert [e.value_ms for _, e in ranked] == sorted(e.value_ms for _, e in ranked)
    assert small.nearest("region/eu-west", candidates=["c", "a"])[0][0] == "a"


def test_cold_start_without_caches_comes_from_the_origin(small: Topology) -> None:
    weights = 16e9
    cold = small.cold_start("a", weights)
    assert cold.source == ORIGIN
    assert cold.gbps == pytest.approx(0.9 * 1.0)  # the node's 1 Gbit/s uplink binds
    assert cold.seconds == pytest.approx(4 * FALLBACK_RTT_MS / 1e3 + weights * 8 / 0.9e9)


def test_cold_start_picks_the_best_path_from_a_weights_cache() -> None:
    nodes = [node("slow", "eu-west", network_gbps=1.0), node("fast", "eu-west", network_gbps=40.0)]
    caches = [
        WeightsCache("near", region="eu-west", bandwidth_gbps=10.0),
        WeightsCache("far", region="us-east", bandwidth_gbps=100.0),
    ]
    document = probes(sample("cache/near", "slow", 2), sample("cache/near", "fast", 2))
    topology = Topology.build(nodes, document, caches=caches, policy=EXACT)
    far_rtt = topology.rtt_ms("cache/far", "fast").value_ms
    window_gbps = PARALLEL_STREAMS * TCP_WINDOW_BYTES * 8 / (far_rtt / 1e3) / 1e9
    assert 10 < window_gbps < 40  # the far cache is TCP-window bound, and still beats 10 Gbit/s
    # A 1 Gbit/s node gets the same rate from both: the nearer cache wins the tie.
    assert topology.cold_start("slow", 1e9).source == "cache/near"
    fast = topology.cold_start("fast", 140e9)
    assert fast.source == "cache/far"
    assert fast.gbps == pytest.approx(0.9 * window_gbps)
    lookup = topology.latency_lookup()
    for name in ("slow", "fast"):
        assert lookup.cold_start_s(name, 140e9) == pytest.approx(
            topology.cold_start(name, 140e9).seconds
        )
        assert (
            lookup.weights_source[lookup.node_index[name]] == topology.cold_start(name, 1.0).source
        )
    with pytest.raises(UnknownEndpointError):
        topology.cold_start("cache/near", 1.0)


def clusters() -> Topology:
    nodes = [node(f"e{i}", "eu-west") for i in range(5)]
    nodes += [node(f"u{i}", "us-east") for i in range(5)]
    nodes.append(node("z", "ap-south"))
    pairs = [
        sample(f"{site}{i}", f"{site}{j}", 1 + (i + j) % 3)
        for site in "eu"
        for i in range(5)
        for j in range(i + 1, 5)
    ]
    pairs += [sample("e0", "u0", 90), sample("e4", "u4", 95)]
    pairs += [sample("region/eu-west", "e2", 4), sample("region/us-east", "u3", 5)]
    return Topology.build(nodes, probes(*pairs), policy=EXACT)


def test_sites_split_nearby_nodes_from_distant_ones_deterministically() -> None:
    topology = clusters()
    sites = topology.sites(seed=0)
    assert [(s.name, s.nodes, s.measured) for s in sites] == [
        ("eu-west-1", ("e0", "e1", "e2", "e3", "e4"), True),
        ("us-east-1", ("u0", "u1", "u2", "u3", "u4"), True),
        ("ap-south-1", ("z",), False),  # never probed: grouped by its declared region
    ]
    assert topology.sites(seed=0) == sites
    assert clusters().sites(seed=0) == sites


def test_the_shipped_example_builds_and_every_region_node_pair_is_answered() -> None:
    bundle = load_bundle([EXAMPLES / "grid", EXAMPLES / "probes"])
    topology = Topology.build(bundle.nodes, bundle.probes)
    lookup = topology.latency_lookup()
    assert set(lookup.nodes) == {n.name for n in bundle.nodes}
    for percentile in Percentile:
        table = lookup.rtt_ms_by_percentile[percentile]
        assert np.isfinite(table).all() and (table > 0).all()
    measured = lookup.basis_code == RttBasis.MEASURED.code
    assert measured.sum() >= len(lookup.nodes)  # every node is probed from some region
    assert len(topology.sites()) > 1
