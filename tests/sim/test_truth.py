"""The hidden truth layer: throttling follows telemetry, failures follow reliability, spreads
follow claims, and each layer can be switched off."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridplace.sim import GroundTruth, TruthSettings
from gridplace.sim.truth import PRIOR_THROTTLE_RATIO, failure_rate_per_hour, true_throttle_ratio
from gridplace.specs import builtin_catalog
from gridplace.specs.gpu import FormFactor
from tests.sim.fixtures import node

CATALOG = builtin_catalog()
HORIZON_S = 400 * 3600.0


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3])
def test_a_node_is_throttled_its_telemetry_share_of_the_time(ratio: float) -> None:
    hot = node("hot", throttle=ratio)
    truth = GroundTruth.build([hot], CATALOG, HORIZON_S, seed=1)
    share = truth.nodes["hot"].throttled_seconds(HORIZON_S) / HORIZON_S
    assert share == pytest.approx(ratio, abs=0.03)
    if ratio > 0:
        assert len(truth.nodes["hot"].throttle_toggles_s) > 50  # in episodes, not one block


def test_a_node_without_status_gets_the_form_factor_prior() -> None:
    silent = node("new", "rtx-4090", throttle=None)
    board = node("dc", "h100-sxm", throttle=None)
    assert true_throttle_ratio(silent, CATALOG) == PRIOR_THROTTLE_RATIO[FormFactor.PCIE]
    assert true_throttle_ratio(board, CATALOG) == PRIOR_THROTTLE_RATIO[FormFactor.SXM]
    assert true_throttle_ratio(node("cool", throttle=0.0), CATALOG) == 0.0


def test_failures_follow_reliability_and_an_explicit_rate_overrides_it() -> None:
    flaky = node("flaky", reliability=0.9)
    truth = GroundTruth.build([flaky], CATALOG, HORIZON_S, seed=2)
    outages = truth.nodes["flaky"].outages
    down_s = sum(min(up, HORIZON_S) - down for down, up in outages)
    assert down_s / HORIZON_S == pytest.approx(0.1, abs=0.03)  # availability 0.9
    settings = TruthSettings(failure_rate_per_hour=0.5)
    assert failure_rate_per_hour(flaky, settings) == 0.5
    fixed = GroundTruth.build([flaky], CATALOG, HORIZON_S, seed=2, settings=settings)
    assert len(fixed.nodes["flaky"].outages) == pytest.approx(0.5 * 400 / 1.5, rel=0.3)
    never = GroundTruth.build([node("solid", reliability=1.0)], CATALOG, HORIZON_S, seed=2)
    assert never.nodes["solid"].outages == ()


def test_an_unhealthy_node_is_down_all_run() -> None:
    truth = GroundTruth.build([node("sick", healthy=False)], CATALOG, 3600.0)
    assert truth.nodes["sick"].outages == ((0.0, math.inf),)


def test_efficiency_spread_shrinks_with_verified_claims() -> None:
    def spread(claims: str) -> float:
        nodes = [
            node(f"n{i}").model_copy(
                update={"spec": node(f"n{i}").spec.model_copy(update={"claims": claims})}
            )
            for i in range(300)
        ]
        truth = GroundTruth.build(nodes, CATALOG, 3600.0, seed=3)
        return float(np.std([math.log(t.decode_factor) for t in truth.nodes.values()]))

    assert spread("self-reported") > 1.5 * spread("benchmarked") > 0


def test_ideal_truth_has_no_deviation_no_throttling_no_outages() -> None:
    nodes = [node("a", throttle=0.5, reliability=0.5), node("b", throttle=None)]
    truth = GroundTruth.build(nodes, CATALOG, HORIZON_S, seed=4, settings=TruthSettings.ideal())
    for hidden in truth.nodes.values():
        assert (hidden.decode_factor, hidden.prefill_factor) == (1.0, 1.0)
        assert hidden.throttled_seconds(HORIZON_S) == 0.0
        assert hidden.outages == ()


def test_draws_are_per_node_and_do_not_shift_when_nodes_are_added() -> None:
    alone = GroundTruth.build([node("a", throttle=0.2)], CATALOG, 3600.0, seed=9)
    crowd = GroundTruth.build(
        [node("z", throttle=0.3), node("a", throttle=0.2)], CATALOG, 3600.0, seed=9
    )
    assert alone.nodes["a"].decode_factor == crowd.nodes["a"].decode_factor
    np.testing.assert_array_equal(
        alone.nodes["a"].throttle_toggles_s, crowd.nodes["a"].throttle_toggles_s
    )
