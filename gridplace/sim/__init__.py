"""The judge: discrete-event simulation of request traffic against a placement plan.

Owns: arrivals (traces, Poisson, bursty), the hidden ground truth of each node (efficiency
spread, thermal episodes, failures), replicas running continuous batching on step times from
the performance model, the router and network, and per-request figures with their SLA summary.
Must not: be imported by anything but ``api``; import ``api``, ``executor`` or ``hal``; judge a
plan by the planner's own numbers (``assignment.predicted``, options, scores) — ground truth comes
from the performance model and ``truth`` only.

Modules, in the order a run uses them:
    seeds      seeded random streams per (run, thing, purpose)
    arrivals   traces and synthetic arrivals, source regions, RTT draws
    diurnal    a daily profile the arrivals' rate follows (time change, compressible)
    measured   measured step times, their ratio to the model, the spread of its misses
    bias       systematic factors per GPU family x engine: measured, drawn or set by hand
    truth      hidden per-node behaviour: efficiency, throttling episodes, outages
    steps      the StepTimes seam (perf model adapter, injectable fakes), speed over time
    deploy     plan + specs -> World (replicas, network, costs), with reference checks
    replica    continuous batching, admission, chunked prefill, per-request ITL
    engine     the heapq event loop, router and network
    coldstart  start times by what a node holds (restarts, failover to standbys), their report
    metrics    SimResult, the SLA definition, per-workload summaries
    plot       latency CDFs (matplotlib, Agg)
    scenario   SimSettings and ``simulate``
    loop       the grounded loop: observations, recalibration and replans in simulated time

Errors (``errors``):

    SimError (ValueError)
        PlanReferenceError     the plan names a missing node/GPU/workload, or a replica that
                               cannot run; .problems: [(assignment label, what is wrong)]
        TraceError             an unreadable trace; .path, .line
        SimSettingsError       a setting outside its domain; .field, .value

Spec files that do not load raise the loader's ``SpecError`` before the simulator sees them.
"""

from gridplace.sim.arrivals import ArrivalProcess, Arrivals, TokenMode, Trace, read_trace
from gridplace.sim.bias import TruthBias
from gridplace.sim.deploy import SimInputs, build_world, resolve
from gridplace.sim.engine import ReplicaSetup, WorkloadSetup, World, run
from gridplace.sim.errors import PlanReferenceError, SimError, SimSettingsError, TraceError
from gridplace.sim.metrics import SimResult, Totals, WorkloadSummary
from gridplace.sim.scenario import SimSettings, simulate
from gridplace.sim.steps import PredictorSteps, ReplicaLimits, SpeedSchedule, StepTimes
from gridplace.sim.truth import GroundTruth, TruthSettings

__all__ = [
    "ArrivalProcess",
    "Arrivals",
    "GroundTruth",
    "PlanReferenceError",
    "PredictorSteps",
    "ReplicaLimits",
    "ReplicaSetup",
    "SimError",
    "SimInputs",
    "SimResult",
    "SimSettings",
    "SimSettingsError",
    "SpeedSchedule",
    "StepTimes",
    "TokenMode",
    "Totals",
    "Trace",
    "TraceError",
    "TruthBias",
    "TruthSettings",
    "WorkloadSetup",
    "WorkloadSummary",
    "World",
    "build_world",
    "read_trace",
    "resolve",
    "run",
    "simulate",
]
