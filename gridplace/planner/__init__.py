"""The planner: the performance model (``perfmodel``), compiling specs into candidate options,
the CP-SAT model, solving, explanations and baselines. ``docs/planner.md`` is the map: the rule
registry (``rules``), the stages, the solver-free core (``core``) and the ports (``ports``).

Must not: import ``hal``, ``topology`` internals or networkx (it gets a latency lookup), touch a GPU
or the network.

This package's face, what the API and the simulator call: ``make_plan`` with a ``Strategy`` and
``SolverSettings`` over ``PlannerInputs``, an ``OptionPredictor`` (``make_predictor``) and an
``RttLookup`` (``NetworkLatency``), giving a ``PlanResult``; ``compile_problem`` alone for checks.
"""

from gridplace.planner.compile import compile_problem
from gridplace.planner.network import NetworkLatency
from gridplace.planner.planning import PlanResult, Strategy, make_plan
from gridplace.planner.ports import (
    OptionPrediction,
    OptionPredictor,
    PlannerInputs,
    PredictionQuery,
    RttLookup,
)
from gridplace.planner.predictor import make_predictor
from gridplace.planner.solve import SolverSettings

__all__ = [
    "NetworkLatency",
    "OptionPrediction",
    "OptionPredictor",
    "PlanResult",
    "PlannerInputs",
    "PredictionQuery",
    "RttLookup",
    "SolverSettings",
    "Strategy",
    "compile_problem",
    "make_plan",
    "make_predictor",
]
