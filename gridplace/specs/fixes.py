"""Fix hints and the reasons they answer, as data: typed changes to a plan's inputs, a fix (one
change or several together) with whether applying it was tried and worked and the capacity the
plan predicted afterwards, and a ``Refusal`` (why a workload is not, or not fully, placed: the
rule of the planner's registry, how many nodes it refused, the numbers of the closest option).

Rendered to text only at the edge (``Fix.text``; the planner's ``explain`` words refusals); the
planner's ``fixes`` module finds and checks fixes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gridplace.specs.common import CatalogRef, Interconnect, Name, Precision, StrictModel

Figure = float | Annotated[str, Field(max_length=200)]


class AllowPrecision(StrictModel):
    kind: Literal["allow-precision"] = "allow-precision"
    precision: Precision

    def text(self) -> str:
        return f"allow {self.precision.value}"


SloField = Literal["ttftMs", "itlMs"]


class RelaxSlo(StrictModel):
    kind: Literal["relax-slo"] = "relax-slo"
    field: SloField
    value: float = Field(gt=0, le=600_000)

    def text(self) -> str:
        return f"relax slo.{self.field} to {self.value:g}"


class RaiseReplicasMax(StrictModel):
    kind: Literal["raise-replicas-max"] = "raise-replicas-max"
    value: int = Field(ge=1, le=10_000)

    def text(self) -> str:
        return f"raise replicas.max to {self.value}"


class RaiseBudget(StrictModel):
    kind: Literal["raise-budget"] = "raise-budget"
    per_hour: float = Field(ge=0, le=10_000_000, description="The budget, USD per hour.")

    def text(self) -> str:
        return f"raise the budget to {self.per_hour:.2f} USD/h"


class AllowPipeline(StrictModel):
    kind: Literal["allow-pipeline"] = "allow-pipeline"
    max_stages: int = Field(ge=2, le=16, description="pipeline.maxStages it sets.")

    def text(self) -> str:
        return f"allow a pipeline over up to {self.max_stages} nodes (pipeline.maxStages)"


class AddNodes(StrictModel):
    kind: Literal["add-nodes"] = "add-nodes"
    gpu: CatalogRef
    gpus_per_node: int = Field(ge=1, le=64)
    count: int = Field(ge=1, le=1_000)
    region: Name
    interconnect: Interconnect = Field(
        default=Interconnect.PCIE, description="The link between the node's GPUs it assumes."
    )
    price_per_hour: float | None = Field(
        default=None, ge=0, description="Per node, from the inputs' offers; None: no offer."
    )
    distinct_providers: bool = Field(
        default=False, description="Each node from another provider (the workload's spread)."
    )

    def text(self) -> str:
        price = (
            f" (~{self.price_per_hour:.2f} USD/h each, as offered)"
            if self.price_per_hour is not None
            else " (no offer in the inputs prices it)"
        )
        return (
            f"add {self.count} node{'s' * (self.count > 1)} of {self.gpus_per_node} x "
            f"{self.gpu} ({self.interconnect.value}) in {self.region}"
            f"{', each from another provider' if self.distinct_providers else ''}{price}"
        )


Change = Annotated[
    AllowPrecision | RelaxSlo | RaiseReplicasMax | RaiseBudget | AllowPipeline | AddNodes,
    Field(discriminator="kind"),
]


class Fix(StrictModel):
    """Changes that together make one workload placeable (``verified``: tried and it worked)."""

    changes: list[Change] = Field(min_length=1, max_length=4)
    verified: bool
    capacity_rps: float | None = Field(
        default=None, ge=0, description="The workload's predicted capacity after the change."
    )

    def text(self) -> str:
        done = " and ".join(change.text() for change in self.changes)
        if self.verified and self.capacity_rps is not None:
            done += f" (tried: placed, {self.capacity_rps:g} req/s)"
        return done


class BestOption(StrictModel):
    """The option that came closest to passing a rule: a node of its class, the GPU, and the
    precision, tensor-parallel degree and GPU share (absent when the rule refused the node
    before any option, as trust does)."""

    node: Name
    gpu: CatalogRef
    precision: Precision | None = None
    tensor_parallel: int | None = Field(default=None, ge=1, le=64)
    gpu_share: int | None = Field(default=None, ge=1, le=64)


class Refusal(StrictModel):
    """One reason a workload is not (fully) placed. ``family``: ``compile`` (a compile-time
    rule refused every option on ``nodes`` nodes; the numbers are the closest option's),
    ``model`` (a CP-SAT family of the assumption core blocks the options that exist),
    ``coverage`` (what is missing: ``unmetRps`` of the demand, ``shortReplicas`` of
    replicas.min; ``rule`` absent when no family was named). ``needed``: what the workload or
    option needs (GiB, ms; the trust level or precision asked for); ``available``: what the node
    has (GiB per GPU, its claims or reliability); ``limit``: the target it must stay within
    (ms); ``unit`` names theirs."""

    family: Literal["compile", "model", "coverage"]
    rule: str | None = Field(default=None, max_length=64, description="A rules.RULES id.")
    measure: str | None = Field(default=None, max_length=32)
    nodes: int | None = Field(default=None, ge=0)
    needed: Figure | None = None
    available: Figure | None = None
    limit: Figure | None = None
    unit: str | None = Field(default=None, max_length=16)
    network_ms: float | None = Field(default=None, ge=0)
    best: BestOption | None = None
    gpus: list[CatalogRef] = Field(default_factory=list, max_length=200)
    detail: str | None = Field(default=None, max_length=2000)
    unmet_rps: float | None = Field(default=None, ge=0)
    short_replicas: int | None = Field(default=None, ge=0)
