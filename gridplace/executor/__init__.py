"""The hands of gridplace: the node agent that makes a node run its part of the latest plan.

Owns: the reconcile loop (``agent``, ``reconcile``, ``diff``), the node's state report
(``report``), turning a replica into a launch (``launcher``), runtime drivers (``drivers``: vllm,
llama.cpp, a command template), server processes (``process``), the crash-safe local state file
(``state``), the weights cache and pre-warmer (``cache``), the per-workload model manifest
(``manifest``) and the agent's HTTP client (``client``).
Must not: import ``gridplace.api`` (imports flow executor <- api), plan anything, or map errors
to exit codes (the CLI does).

Errors (``errors``)::

    ExecutorError
        ConfigError          a bad agent option or model manifest
        ApiError             the API did not do what was asked
            ApiUnavailable   no answer, 5xx or 429: retried at the next loop
            ApiRejected      4xx (.status): bad token, forbidden, invalid
            ApiAnswerRefused an answer not to act on (assignments for another node)
        DriverError          no command line can be built for an assignment
        LaunchFailed         the server process could not be started
        StateFileError       the state file cannot be opened or has an unknown schema
        CacheError           fetching weights failed
            FetchFailed      the source could not be read (a later fetch resumes)
            ChecksumMismatch the bytes do not hash to the expected sha256
            CacheFull        the weights do not fit even after evicting everything unpinned
"""

from gridplace.executor.agent import Agent, AgentConfig, gpu_ids_of
from gridplace.executor.cache import Prewarmer, WeightCache
from gridplace.executor.client import ApiClient, Desired
from gridplace.executor.diff import Diff, ReplicaSpec, compute_diff, desired_replicas
from gridplace.executor.drivers import CommandDriver, LlamaCppDriver, VllmDriver
from gridplace.executor.errors import (
    ApiAnswerRefused,
    ApiError,
    ApiRejected,
    ApiUnavailable,
    CacheError,
    CacheFull,
    ChecksumMismatch,
    ConfigError,
    DriverError,
    ExecutorError,
    FetchFailed,
    LaunchFailed,
    StateFileError,
)
from gridplace.executor.launcher import Launcher
from gridplace.executor.manifest import DriverKind, Manifest, WeightSource, load_manifest
from gridplace.executor.process import ProcessRuntime, Runtime
from gridplace.executor.reconcile import ReconcileConfig, Reconciler
from gridplace.executor.state import Phase, StateFile

__all__ = [
    "Agent",
    "AgentConfig",
    "ApiAnswerRefused",
    "ApiClient",
    "ApiError",
    "ApiRejected",
    "ApiUnavailable",
    "CacheError",
    "CacheFull",
    "ChecksumMismatch",
    "CommandDriver",
    "ConfigError",
    "Desired",
    "Diff",
    "DriverError",
    "DriverKind",
    "ExecutorError",
    "FetchFailed",
    "LaunchFailed",
    "Launcher",
    "LlamaCppDriver",
    "Manifest",
    "Phase",
    "Prewarmer",
    "ProcessRuntime",
    "ReconcileConfig",
    "Reconciler",
    "ReplicaSpec",
    "Runtime",
    "StateFile",
    "StateFileError",
    "VllmDriver",
    "WeightCache",
    "WeightSource",
    "compute_diff",
    "desired_replicas",
    "gpu_ids_of",
    "load_manifest",
]
