"""The simulator's front door: a plan, the specs and settings in, a ``SimResult`` out.

Owns: ``SimSettings`` and putting arrivals, ground truth, the world and the event loop together.
Must not: print, or read files other than a trace it is pointed at (callers load specs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gridplace.sim import arrivals as arrivals_module
from gridplace.sim.arrivals import ArrivalProcess, Arrivals, TokenMode, Trace, WorkloadTraffic
from gridplace.sim.coldstart import ColdStartSettings
from gridplace.sim.deploy import SimInputs, build_world, model_of
from gridplace.sim.diurnal import DailyCycle
from gridplace.sim.engine import DRAIN_S, run
from gridplace.sim.errors import SimSettingsError
from gridplace.sim.metrics import SimResult
from gridplace.sim.truth import GroundTruth, TruthSettings
from gridplace.specs import PlacementPlan


@dataclass(frozen=True)
class SimSettings:
    """How to run: traffic, length, seed and which hidden layers are on."""

    duration_s: float = 3600.0
    seed: int = 0
    process: ArrivalProcess = ArrivalProcess.POISSON
    trace: Trace | None = None
    tokens: TokenMode = TokenMode.SCALED
    token_sigma: float = 0.0  # lognormal spread of synthetic request sizes
    truth: TruthSettings = field(default_factory=TruthSettings)
    drain_s: float = DRAIN_S
    diurnal: DailyCycle | None = None  # the rate follows a daily profile (diurnal.py)
    cold_starts: ColdStartSettings | None = None  # restarts and failover take their cold start


def workload_traffic(inputs: SimInputs) -> list[WorkloadTraffic]:
    traffic = []
    for workload in inputs.workloads:
        spec = workload.spec
        _, model = model_of(workload, inputs.catalog)
        traffic.append(
            WorkloadTraffic(
                name=workload.name,
                requests_per_second=spec.traffic.requests_per_second,
                prompt_tokens=spec.traffic.prompt_tokens,
                output_tokens=spec.traffic.output_tokens,
                regions=tuple(s.region for s in spec.traffic.sources),
                shares=tuple(s.share for s in spec.traffic.sources),
                max_context_tokens=model.max_context_tokens,
            )
        )
    return traffic


def make_arrivals(inputs: SimInputs, settings: SimSettings) -> Arrivals:
    cycle = settings.diurnal
    span_s = cycle.warped_span_s(settings.duration_s) if cycle else settings.duration_s
    arrivals = arrivals_module.generate(
        workload_traffic(inputs),
        span_s,
        settings.process,
        settings.seed,
        trace=settings.trace,
        tokens=settings.tokens,
        token_sigma=settings.token_sigma,
    )
    if cycle is None:
        return arrivals
    return replace(arrivals, time_s=cycle.warp(arrivals.time_s, settings.duration_s))


def simulate(
    plan: PlacementPlan, inputs: SimInputs, settings: SimSettings | None = None
) -> SimResult:
    """Replay the settings' traffic against ``plan`` on the inputs' grid, with hidden truth."""
    settings = settings or SimSettings()
    if not settings.duration_s > 0:
        raise SimSettingsError("duration_s", settings.duration_s, "must be > 0")
    horizon_s = settings.duration_s + settings.drain_s
    truth = GroundTruth.build(
        inputs.nodes, inputs.catalog, horizon_s, settings.seed, settings.truth
    )
    world = build_world(plan, inputs, truth, settings.cold_starts)
    return run(world, make_arrivals(inputs, settings), settings.duration_s, settings.drain_s)
