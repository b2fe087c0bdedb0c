"""The performance model: predicted TTFT, ITL, VRAM, capacity and cold start of any model x GPU
x precision x engine x tensor-parallel degree, from a roofline with fitted efficiencies.

Owns: the prediction (``predict``, ``Predictor``), precision/engine support (``NotSupported``
with a reason, never a silent fallback), capacity inside an SLO, cold-start time, the efficiency
table (package data fitted by ``bench/calibrate_perfmodel.py``) and PerformanceProfile refits.
Must not: import hal, topology, networkx or anything downstream of the planner; touch a GPU, the
network or ``../shared``; print.

Modules, in the order a prediction uses them:
    support     which precisions/engines a GPU can run; the tensor rate a precision computes at
    shape       a model's parameters split into dense, experts, embeddings; KV bytes per token
    engines     per-engine overheads, memory reserve and weight formats (documented priors)
    generations older engine releases (e.g. vllm-2023: eager, Python per-sequence host time)
    efficiency  the fitted efficiency table and its lookups
    hardware    thermal derate, GPU-to-GPU links and all-reduce, cold start
    roofline    step times (decode = ITL, prefill = TTFT)
    memory      per-GPU VRAM: weights + KV cache + engine reserve
    capacity    requests/s inside an SLO (Little's law, prefill queueing)
    profiles    PerformanceProfile overrides and refits
    predict     ``predict`` and ``Predictor``, which put it all together

Errors (``errors``):

    PerfModelError (ValueError)
        InvalidQuery            a query outside the model's domain; .field, .value
        EfficiencyTableError    a malformed efficiency table
        ProfileError            a PerformanceProfile that cannot be applied; .profile

Unknown catalog references raise the catalog's ``SpecError`` (with near matches).
"""

from gridplace.planner.perfmodel.capacity import Capacity, estimate_capacity
from gridplace.planner.perfmodel.efficiency import EfficiencyTable, builtin_table, load_table
from gridplace.planner.perfmodel.errors import (
    EfficiencyTableError,
    InvalidQuery,
    PerfModelError,
    ProfileError,
)
from gridplace.planner.perfmodel.generations import GENERATIONS, EngineGeneration
from gridplace.planner.perfmodel.hardware import ColdStart, cold_start, derate_factors
from gridplace.planner.perfmodel.predict import Predictor, predict
from gridplace.planner.perfmodel.profiles import ProfileBook
from gridplace.planner.perfmodel.results import NotSupported, Prediction
from gridplace.planner.perfmodel.roofline import StepTime

__all__ = [
    "GENERATIONS",
    "Capacity",
    "ColdStart",
    "EfficiencyTable",
    "EfficiencyTableError",
    "EngineGeneration",
    "InvalidQuery",
    "NotSupported",
    "PerfModelError",
    "Prediction",
    "Predictor",
    "ProfileBook",
    "ProfileError",
    "StepTime",
    "builtin_table",
    "cold_start",
    "derate_factors",
    "estimate_capacity",
    "load_table",
    "predict",
]
