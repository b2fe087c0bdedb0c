"""The planner's rules, one entry each: the only list of rule ids in the planner.

A rule is either a compile-time filter (an option that breaks it is dropped before the model is
built and leaves a ``Rejection``) or a CP-SAT family (constraints named ``<id>[...]`` behind the
family's enforcement literal, so a diagnosis solve can turn families into assumptions). The
model builder, compile, explain and the README's table iterate ``RULES``; a function implements
a rule by decorating itself with ``implements(<id>)``. A compile-time rule and a model family
never share an id.

A rejection carries its numbers as a ``Reason``; ``describe`` is the one place they become text.
This module imports no solver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar


class Stage(Enum):
    COMPILE = "compile-time filter"
    MODEL = "CP-SAT family"


@dataclass(frozen=True)
class Rule:
    """One rule: its id, where it is enforced, whether it is hard, what a rejection by it means
    (as explain's summary words it) and what would fix it. Hints of compile-time rules may use
    ``{regions}`` (the workload's traffic sources), ``{needed:.0f}`` (the smallest need of the
    rejections) and ``{or_int4}`` (", or allow int4" unless int4 is allowed already)."""

    id: str
    stage: Stage
    hard: bool
    description: str
    hint: str

    @property
    def function(self) -> Callable[..., Any]:
        """The function that checks (compile) or states (model) this rule."""
        return _FUNCTIONS[self.id]


# Compile-time rules in the order compile checks them: the later one an option breaks, the
# closer it came to surviving (explain names the closest).
RULES: tuple[Rule, ...] = (
    Rule("trust", Stage.COMPILE, True, "below the trust requirement",
         "benchmark or attest more nodes, or lower trust.minClaims/minReliability"),
    Rule("precision-support", Stage.COMPILE, True, "no supported precision",
         "allow a precision the grid's GPUs support (fp8 needs Ada/Hopper/CDNA3)"),
    Rule("vram-per-gpu", Stage.COMPILE, True, "too little VRAM",
         "add nodes with >= {needed:.0f} GiB per GPU in {regions}{or_int4}"),
    Rule("slo-itl", Stage.COMPILE, True, "ITL over target",
         "add faster-memory GPUs in {regions}, or relax itlMs"),
    Rule("slo-ttft", Stage.COMPILE, True, "TTFT over target",
         "add capacity close to {regions}, or relax ttftMs"),
    Rule("pipeline-vram", Stage.COMPILE, True, "too little VRAM even as a pipeline",
         "add nodes with more VRAM in {regions}, raise pipeline.maxStages{or_int4}"),
    Rule("pipeline-itl", Stage.COMPILE, True, "pipeline ITL incl. network over target",
         "add nodes in one region close to {regions}, or relax itlMs"),
    Rule("gpu-count", Stage.MODEL, True, "whole-GPU replicas pack into each pool's nodes",
         "add GPUs (nodes) that can serve it, or free some by lowering other workloads' replicas"),
    Rule("gpu-sharing", Stage.MODEL, True, "shared-GPU replicas fit in the GPU slots left",
         "add GPUs, or allow a precision small enough to share a GPU"),
    Rule("vram-pool", Stage.MODEL, True, "VRAM booked in a pool stays within the pool's VRAM",
         "add GPUs with more memory"),
    Rule("pipeline-nodes", Stage.MODEL, True, "a node holds at most one pipeline stage",
         "add nodes that can hold a stage, or lower other workloads' replicas"),
    Rule("thermal-power", Stage.MODEL, True, "sustained draw within the pool's power budget",
         "cool the hot nodes (their throttling caps the power they can sustain)"),
    Rule("demand-coverage", Stage.MODEL, True, "capacity inside the SLO covers the demand",
         "lower requestsPerSecond or add capacity"),
    Rule("replica-bounds", Stage.MODEL, True, "replicas.max >= replicas >= replicas.min",
         "raise replicas.max"),
    Rule("spread", Stage.MODEL, True, "at most maxPerDomain replicas per provider / region",
         "raise spread.maxPerDomain, or add nodes of other providers/regions"),
    Rule("budget", Stage.MODEL, True, "total cost per hour within the budget",
         "raise the budget"),
    Rule("pinned", Stage.MODEL, True, "pinned replicas of the previous plan stay",
         "unpin replicas of the previous plan"),
    Rule("failover", Stage.MODEL, False, "capacity covers the demand after losing a node",
         "add nodes that can serve it, or lower redundancy.nodeFailures"),
)  # fmt: skip
BY_ID = {rule.id: rule for rule in RULES}
COMPILE_RULES = tuple(rule for rule in RULES if rule.stage is Stage.COMPILE)
MODEL_RULES = tuple(rule for rule in RULES if rule.stage is Stage.MODEL)
# Compile-time rules of pipeline options (``pipeline_options``), not of one node's predictions.
PIPELINE_RULES = frozenset({"pipeline-vram", "pipeline-itl"})

_FUNCTIONS: dict[str, Callable[..., Any]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def implements(rule_id: str) -> Callable[[F], F]:
    """Mark a function as the one that checks or states rule ``rule_id``."""
    if rule_id not in BY_ID:
        raise ValueError(f"no rule {rule_id!r} in rules.RULES")

    def register(function: F) -> F:
        if _FUNCTIONS.setdefault(rule_id, function) is not function:
            raise ValueError(f"rule {rule_id!r} has two functions")
        return function

    return register


@dataclass(frozen=True)
class Reason:
    """The numbers of one rejection. ``measure`` names what was compared (``claims``,
    ``reliability``, ``support``, ``vram``, ``itl``, ``ttft``: TTFT incl. network over the
    target, ``ttft-no-load``: no load left inside the target, ``pipeline-vram``: the stage nodes
    hold too few layers, ``pipeline-itl``: a pipeline's ITL with its hand-offs over the
    target); ``needed`` is what the option needs or shows, ``available`` what the pool has or
    the target allows, in ``unit``."""

    option: str  # the option's label, "bf16 tp2 1/2 GPU"; "" for a whole pool
    measure: str
    needed: float | str
    available: float | str
    unit: str = ""
    network_ms: float = 0.0  # the nearest source's p99 RTT (ttft-no-load); hand-offs (pipeline)
    detail: str = ""  # the performance model's words (support); the stages' regions (pipeline)

    @property
    def distance(self) -> float:
        """How far the option was from passing (smaller is closer): for VRAM what it needs per
        GPU over what it has (a quarter-GPU share needs less than a whole GPU but has a quarter
        of the memory: the whole GPU is closer); otherwise the figure it needs, in its unit."""
        if self.measure == "vram" and float(self.available) > 0:
            return float(self.needed) / float(self.available)
        return float(self.needed) if self.unit in ("GiB", "ms") else 0.0


def describe(reason: Reason) -> str:
    """The text of a rejection: "int4 tp1: needs 38.1 GiB per GPU, has 24.0"."""
    prefix = f"{reason.option}: " if reason.option else ""
    needed, available = reason.needed, reason.available
    if reason.measure == "claims":
        return f"claims {needed} < required {available}"
    if reason.measure == "reliability":
        return f"reliability {float(needed):.2f} < required {float(available):.2f}"
    if reason.measure == "support":
        return f"{prefix}{reason.detail}"
    if reason.measure == "vram":
        return f"{prefix}needs {float(needed):.1f} GiB per GPU, has {float(available):.1f}"
    if reason.measure == "itl":
        shown, target = over(float(needed), float(available))
        return f"{prefix}ITL {shown} ms > {target} ms"
    if reason.measure == "pipeline-vram":
        return f"{prefix}{reason.detail}"
    if reason.measure == "pipeline-itl":
        return (
            f"{prefix}stages over {reason.detail} need {reason.network_ms:.0f} ms of network "
            f"per token (ITL {float(needed):.0f} ms) > {float(available):g} ms ITL"
        )
    if reason.measure == "ttft-no-load":
        return (
            f"{prefix}TTFT {float(needed):.0f} ms before network + {reason.network_ms:.0f} ms "
            f"network from the nearest source leaves no load inside the {float(available):g} ms "
            "target"
        )
    return f"{prefix}TTFT {float(needed):.0f} ms incl. network > {float(available):g} ms"


def over(value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` (value > limit) with as few decimals as show them apart: "25.4"
    and "25", never "25 ms > 25 ms"."""
    for decimals in range(4):
        shown, bound = f"{value:.{decimals}f}", f"{limit:.{decimals}f}"
        if shown != bound:
            return shown, f"{limit:g}"
    return f"{value:.6g}", f"{limit:g}"


def rules_table() -> str:
    """The registry as the Markdown table in docs/planner.md (a test keeps them equal)."""
    rows = ["| id | stage | kind | description | fix hint |", "|---|---|---|---|---|"]
    for rule in RULES:
        kind = "hard" if rule.hard else "soft"
        rows.append(
            f"| `{rule.id}` | {rule.stage.value} | {kind} | {rule.description} | {rule.hint} |"
        )
    return "\n".join(rows)
