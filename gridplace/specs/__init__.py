"""The gridplace language: pydantic models for every YAML kind, the loader, JSON Schema, and the
built-in GPU and model catalogs (package data).

Owns: what a valid document is, and turning files into validated, catalog-resolved objects.
Must not: import any other gridplace package, do I/O beyond reading the files it is given.
"""

from gridplace.specs.catalog import Catalog, builtin_catalog
from gridplace.specs.common import (
    API_VERSION,
    Architecture,
    ClaimLevel,
    Engine,
    Interconnect,
    Metadata,
    Precision,
    Vendor,
)
from gridplace.specs.errors import SpecError, SpecIssue
from gridplace.specs.gpu import GPUModel, GPUModelSpec, PCIeLink, TensorThroughput
from gridplace.specs.loader import KINDS, SpecBundle, build_bundle, load_bundle, load_documents
from gridplace.specs.model_arch import ModelArchitecture, ModelArchitectureSpec
from gridplace.specs.node import GPUGroup, Node, NodeSpec, NodeStatus, ThermalStatus
from gridplace.specs.observation import LatencyQuantiles, Observations, ObservationWindow
from gridplace.specs.plan import Assignment, PlacementPlan, Prediction
from gridplace.specs.probes import LatencyProbes, ProbeSample
from gridplace.specs.profile import PerformanceProfile
from gridplace.specs.workload import InferenceWorkload, InferenceWorkloadSpec

__all__ = [
    "API_VERSION",
    "KINDS",
    "Architecture",
    "Assignment",
    "Catalog",
    "ClaimLevel",
    "Engine",
    "GPUGroup",
    "GPUModel",
    "GPUModelSpec",
    "InferenceWorkload",
    "InferenceWorkloadSpec",
    "Interconnect",
    "LatencyProbes",
    "LatencyQuantiles",
    "Metadata",
    "ModelArchitecture",
    "ModelArchitectureSpec",
    "Node",
    "NodeSpec",
    "NodeStatus",
    "ObservationWindow",
    "Observations",
    "PCIeLink",
    "PerformanceProfile",
    "PlacementPlan",
    "Precision",
    "Prediction",
    "ProbeSample",
    "SpecBundle",
    "SpecError",
    "SpecIssue",
    "TensorThroughput",
    "ThermalStatus",
    "Vendor",
    "build_bundle",
    "builtin_catalog",
    "load_bundle",
    "load_documents",
]
