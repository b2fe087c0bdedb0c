"""Ground truth the planner does not see: how each node really behaves during a run.

Owns: per-node hidden efficiency deviations, thermal throttling episodes and outages, drawn from
seeded streams. Must not: read anything the planner produced (a plan's ``predicted`` figures, its
options or scores) — the judge must not take the defendant's word — nor time steps itself
(``steps`` applies these figures to the performance model).

The three layers, each switchable (``TruthSettings``):

- efficiency: the catalog and the fitted efficiency table describe a typical card; a real node
  differs (board partner clocks, risers, drivers, neighbours on the host). Each node's decode
  and prefill step times are multiplied by independent lognormal factors with median 1 and a
  spread that shrinks as its inventory is verified more (``EFFICIENCY_SIGMA`` by claims level:
  a benchmarked node's figures have been measured).
- thermal: a node throttles in episodes. Its long-run throttled share is its telemetry's
  ``status.thermal.throttleRatio`` (history repeats; the forecast is the planner's business);
  a node with no thermal status gets a prior (``PRIOR_THROTTLE_RATIO``: air-cooled PCIe cards in
  unknown chassis throttle more than SXM/OAM boards in datacenters). Episodes and gaps are
  exponential (an alternating renewal process) with mean episode ``throttle_episode_s``; the
  state at time 0 is drawn from the stationary mix. While throttled a node runs at the
  performance model's fully capped speed (derate 1: compute x0.70, bandwidth x0.85); otherwise
  at full speed (derate 0). The planner books the time-weighted mix.
- systematic bias (``bias``): a GPU family on an engine misses the model as a whole; from
  measurements where they exist, else drawn per family x engine x phase, or set by hand.
  The per-node efficiency spread applies on top of it.
- failures: a node fails as a Poisson process while up and is back after an exponential repair
  time (mean ``repair_s``, engine restart included). The rate is ``failure_rate_per_hour`` if
  given, else derived from the node's observed availability ``reliability`` r (a prior when
  absent): availability = MTBF / (MTBF + MTTR) gives rate = (1 - r) / (r x MTTR). A node whose
  status says unhealthy is down for the whole run.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gridplace.planner.pools import ASSUMED_RELIABILITY
from gridplace.sim.bias import BiasBook, TruthBias
from gridplace.sim.seeds import PURPOSE_EFFICIENCY, PURPOSE_FAILURE, PURPOSE_THERMAL, stream
from gridplace.specs import Catalog, ClaimLevel, Node
from gridplace.specs.gpu import FormFactor

FloatArray = npt.NDArray[np.float64]
EFFICIENCY_SIGMA = {  # lognormal sigma of step-time deviations by claims level (assumed)
    ClaimLevel.SELF_REPORTED: 0.10,
    ClaimLevel.PROBED: 0.07,
    ClaimLevel.BENCHMARKED: 0.04,
    ClaimLevel.ATTESTED: 0.04,
}
PRIOR_THROTTLE_RATIO = {FormFactor.PCIE: 0.10, FormFactor.SXM: 0.02, FormFactor.OAM: 0.02}
THROTTLE_EPISODE_S = 600.0
REPAIR_S = 1800.0


@dataclass(frozen=True)
class TruthSettings:
    """Which hidden layers are on, and their parameters (see the module docstring)."""

    efficiency: bool = True
    thermal: bool = True
    failures: bool = True
    throttle_episode_s: float = THROTTLE_EPISODE_S
    failure_rate_per_hour: float | None = None  # None: from each node's reliability
    repair_s: float = REPAIR_S
    bias: TruthBias = field(default_factory=TruthBias)

    @classmethod
    def ideal(cls) -> TruthSettings:
        """Nodes exactly as the performance model says, never throttled, never failing."""
        return cls(efficiency=False, thermal=False, failures=False, bias=TruthBias.none())


@dataclass(frozen=True)
class NodeTruth:
    """How one node really behaves over the run."""

    name: str
    decode_factor: float  # decode step time multiplier (> 1: slower than the model)
    prefill_factor: float  # prefill work multiplier
    throttle_ratio: float  # long-run share of time throttled
    throttled_at_start: bool
    throttle_toggles_s: FloatArray  # times the throttled state flips, ascending
    outages: tuple[tuple[float, float], ...]  # (down_s, up_s), ascending, disjoint

    def throttled_at(self, time_s: float) -> bool:
        flips = int(np.searchsorted(self.throttle_toggles_s, time_s, side="right"))
        return self.throttled_at_start ^ (flips % 2 == 1)

    def throttled_seconds(self, horizon_s: float) -> float:
        """Seconds of ``[0, horizon_s)`` spent throttled."""
        edges = [0.0, *[t for t in self.throttle_toggles_s if t < horizon_s], horizon_s]
        state, total = self.throttled_at_start, 0.0
        for start, end in itertools.pairwise(edges):
            total += (end - start) if state else 0.0
            state = not state
        return total


@dataclass(frozen=True)
class GroundTruth:
    """Every node's hidden behaviour for one run."""

    nodes: Mapping[str, NodeTruth]
    settings: TruthSettings = field(default_factory=TruthSettings)
    seed: int = 0
    bias: BiasBook = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", BiasBook(self.settings.bias, self.seed))

    @classmethod
    def build(
        cls,
        nodes: Sequence[Node],
        catalog: Catalog,
        horizon_s: float,
        seed: int = 0,
        settings: TruthSettings | None = None,
    ) -> GroundTruth:
        settings = settings or TruthSettings()
        return cls(
            {n.name: _node_truth(n, catalog, horizon_s, seed, settings) for n in nodes},
            settings,
            seed,
        )


def true_throttle_ratio(node: Node, catalog: Catalog) -> float:
    """The share of time the node is throttled: its telemetry, else the form-factor prior."""
    thermal = node.status.thermal if node.status else None
    if thermal is not None:
        return thermal.throttle_ratio
    priors = [
        PRIOR_THROTTLE_RATIO[catalog.gpus[g.model].form_factor]
        for g in node.spec.gpus
        if g.model in catalog.gpus
    ]
    return max(priors, default=PRIOR_THROTTLE_RATIO[FormFactor.PCIE])


def failure_rate_per_hour(node: Node, settings: TruthSettings) -> float:
    if settings.failure_rate_per_hour is not None:
        return settings.failure_rate_per_hour
    reliability = node.spec.reliability
    availability = ASSUMED_RELIABILITY if reliability is None else reliability
    if availability >= 1.0:
        return 0.0
    if availability <= 0.0:
        return math.inf
    return (1 - availability) / (availability * settings.repair_s / 3600.0)


def _node_truth(
    node: Node, catalog: Catalog, horizon_s: float, seed: int, settings: TruthSettings
) -> NodeTruth:
    decode_factor = prefill_factor = 1.0
    if settings.efficiency:
        sigma = EFFICIENCY_SIGMA[node.spec.claims]
        draws = stream(seed, node.name, PURPOSE_EFFICIENCY).standard_normal(2)
        decode_factor, prefill_factor = (float(math.exp(sigma * z)) for z in draws)
    ratio = true_throttle_ratio(node, catalog) if settings.thermal else 0.0
    at_start, toggles = _episodes(
        ratio, settings.throttle_episode_s, horizon_s, stream(seed, node.name, PURPOSE_THERMAL)
    )
    outages: tuple[tuple[float, float], ...] = ()
    if not node.healthy:
        outages = ((0.0, math.inf),)
    elif settings.failures:
        outages = _outages(
            failure_rate_per_hour(node, settings),
            settings.repair_s,
            horizon_s,
            stream(seed, node.name, PURPOSE_FAILURE),
        )
    return NodeTruth(
        name=node.name,
        decode_factor=decode_factor,
        prefill_factor=prefill_factor,
        throttle_ratio=ratio,
        throttled_at_start=at_start,
        throttle_toggles_s=toggles,
        outages=outages,
    )


def _episodes(
    ratio: float, episode_s: float, horizon_s: float, rng: np.random.Generator
) -> tuple[bool, FloatArray]:
    """An alternating renewal process throttled ``ratio`` of the time (see module docstring)."""
    if ratio <= 0.0:
        return False, np.zeros(0)
    if ratio >= 1.0:
        return True, np.zeros(0)
    gap_s = episode_s * (1 - ratio) / ratio
    throttled = bool(rng.random() < ratio)
    state, now, toggles = throttled, 0.0, []
    while True:
        # Exponential sojourns are memoryless, so the first one is drawn like any other.
        now += float(rng.exponential(episode_s if state else gap_s))
        if now >= horizon_s:
            break
        toggles.append(now)
        state = not state
    return throttled, np.asarray(toggles, dtype=np.float64)


def _outages(
    rate_per_hour: float, repair_s: float, horizon_s: float, rng: np.random.Generator
) -> tuple[tuple[float, float], ...]:
    if rate_per_hour <= 0.0:
        return ()
    if math.isinf(rate_per_hour):
        return ((0.0, math.inf),)
    mean_up_s = 3600.0 / rate_per_hour
    outages, now = [], 0.0
    while True:
        now += float(rng.exponential(mean_up_s))
        if now >= horizon_s:
            break
        back = now + float(rng.exponential(repair_s))
        outages.append((now, back))
        now = back
    return tuple(outages)
