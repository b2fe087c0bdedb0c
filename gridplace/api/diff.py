"""What a change of workloads would do to the running grid: the difference between two plans.

``diff_plans(before, after, slos)`` compares the plan in force with the plan a change would get
(a dry run, or a local replan from ``--previous``): per workload, replicas added, moved and
removed, capacity and predicted TTFT/ITL before and after, SLO met, unplaced with reasons, and
the cost per hour before, after and the delta. ``FailOn`` says which outcomes fail a CI job.

A replica is its node, GPUs, precision, tensor parallelism and share of a GPU; one that leaves a
place and one that appears elsewhere in the same workload pair up as a move (in name order: the
pairing is for reading, the counts are what matter). A workload is unchanged when its replicas
are and every figure shown (rounded as shown) is too; an unchanged directory diffs empty.

Must not: plan (the planner did), print (``commands/diff.py`` renders).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from gridplace.specs import Assignment, PlacementPlan

COST_EPSILON = 0.005  # USD per hour: below a cent is rounding, not a change


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class WorkloadSide:
    """One workload in one plan. Latencies are the worst placed replica's (None: none placed)."""

    replicas: int
    demand_rps: float
    capacity_rps: float
    ttft_ms: float | None
    itl_ms: float | None
    slo_met: bool
    cost_per_hour: float
    unplaced: list[str] = field(default_factory=list)  # reasons; empty when fully placed

    def shown(self) -> tuple[object, ...]:
        """The figures as rendered: what a reader would see differ."""
        return (
            self.replicas,
            round(self.capacity_rps, 1),
            None if self.ttft_ms is None else round(self.ttft_ms),
            None if self.itl_ms is None else round(self.itl_ms, 1),
            self.slo_met,
            round(self.cost_per_hour, 2),
            bool(self.unplaced),
        )


@dataclass(frozen=True)
class Move:
    source: str
    target: str


@dataclass(frozen=True)
class WorkloadDiff:
    name: str
    change: Change
    before: WorkloadSide | None
    after: WorkloadSide | None
    added: list[str]
    moved: list[Move]
    removed: list[str]
    slo_ttft_ms: float | None = None  # the targets of the submitted workload
    slo_itl_ms: float | None = None

    @property
    def newly_unplaced(self) -> bool:
        return bool(self.after and self.after.unplaced) and not (
            self.before and self.before.unplaced
        )

    @property
    def newly_missing_slo(self) -> bool:
        return bool(self.after and not self.after.slo_met) and not (
            self.before and not self.before.slo_met
        )


@dataclass(frozen=True)
class PlanDiff:
    base_generation: int  # the plan compared against (0: there was none)
    workloads: list[WorkloadDiff]  # every workload of either plan, by name
    cost_before: float
    cost_after: float

    @property
    def cost_delta(self) -> float:
        return self.cost_after - self.cost_before

    @property
    def cost_delta_ratio(self) -> float | None:
        """The increase as a share of the cost before (None when there was no cost before)."""
        return self.cost_delta / self.cost_before if self.cost_before > 0 else None

    @property
    def changes(self) -> list[WorkloadDiff]:
        return [w for w in self.workloads if w.change is not Change.UNCHANGED]

    @property
    def empty(self) -> bool:
        return not self.changes and abs(self.cost_delta) < COST_EPSILON

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseGeneration": self.base_generation,
            "empty": self.empty,
            "costPerHour": {
                "before": round(self.cost_before, 4),
                "after": round(self.cost_after, 4),
                "delta": round(self.cost_delta, 4),
            },
            "workloads": [_camel(asdict(w)) for w in self.changes],
            "unchanged": [w.name for w in self.workloads if w.change is Change.UNCHANGED],
        }


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel_key(k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def replica_label(assignment: Assignment) -> str:
    """``node:gpus precision`` (+ ``tpN``, ``1/N`` of a shared GPU)."""
    label = f"{assignment.node}:{','.join(map(str, assignment.gpus))} {assignment.precision.value}"
    if assignment.tensor_parallel > 1:
        label += f" tp{assignment.tensor_parallel}"
    if assignment.gpu_share > 1:
        label += f" 1/{assignment.gpu_share}"
    return label


def _sides(plan: PlacementPlan | None) -> tuple[dict[str, WorkloadSide], dict[str, list[str]]]:
    """Every workload of ``plan`` as a side, and its replicas' labels."""
    if plan is None:
        return {}, {}
    labels: dict[str, list[str]] = {}
    worst: dict[str, tuple[float, float]] = {}
    for a in plan.spec.assignments:
        labels.setdefault(a.workload, []).append(replica_label(a))
        if a.predicted is not None:
            ttft, itl = worst.get(a.workload, (0.0, 0.0))
            worst[a.workload] = (max(ttft, a.predicted.ttft_ms), max(itl, a.predicted.itl_ms))
    status = plan.status
    unplaced = {u.workload: list(u.reasons) for u in status.unplaced} if status else {}
    sides: dict[str, WorkloadSide] = {}
    for coverage in status.workloads if status else []:
        latency = worst.get(coverage.name)
        sides[coverage.name] = WorkloadSide(
            replicas=len(labels.get(coverage.name, [])),
            demand_rps=coverage.demand_rps,
            capacity_rps=coverage.capacity_rps,
            ttft_ms=latency[0] if latency else None,
            itl_ms=latency[1] if latency else None,
            slo_met=coverage.slo_met,
            cost_per_hour=coverage.cost_per_hour or 0.0,
            unplaced=unplaced.get(coverage.name, []),
        )
    for name, reasons in unplaced.items():  # unplaced without a coverage row
        if name not in sides:
            sides[name] = WorkloadSide(0, 0.0, 0.0, None, None, False, 0.0, reasons)
    return sides, labels


def _replica_changes(
    before: list[str], after: list[str]
) -> tuple[list[str], list[Move], list[str]]:
    """(added, moved, removed): replicas only in ``after``, pairs, replicas only in ``before``."""
    left = sorted((Counter(before) - Counter(after)).elements())
    arrived = sorted((Counter(after) - Counter(before)).elements())
    pairs = min(len(left), len(arrived))
    moved = [Move(source, target) for source, target in zip(left, arrived, strict=False)]
    return arrived[pairs:], moved, left[pairs:]


def diff_plans(
    before: PlacementPlan | None,
    after: PlacementPlan,
    slos: dict[str, tuple[float, float]] | None = None,
    base_generation: int | None = None,
) -> PlanDiff:
    """The difference from ``before`` (None: nothing runs yet) to ``after``. ``slos`` gives each
    submitted workload's (TTFT, ITL) targets in ms, shown beside the predictions."""
    old, old_labels = _sides(before)
    new, new_labels = _sides(after)
    slos = slos or {}
    workloads = []
    for name in sorted(old.keys() | new.keys()):
        added, moved, removed = _replica_changes(old_labels.get(name, []), new_labels.get(name, []))
        was, now = old.get(name), new.get(name)
        if was is None:
            change = Change.ADDED
        elif now is None:
            change = Change.REMOVED
        elif added or moved or removed or was.shown() != now.shown():
            change = Change.CHANGED
        else:
            change = Change.UNCHANGED
        ttft_slo, itl_slo = slos.get(name, (None, None))
        workloads.append(
            WorkloadDiff(name, change, was, now, added, moved, removed, ttft_slo, itl_slo)
        )
    cost_before = _cost(before)
    if base_generation is None:
        base_generation = (before.metadata.generation or 0) if before else 0
    return PlanDiff(base_generation, workloads, cost_before, _cost(after))


def _cost(plan: PlacementPlan | None) -> float:
    if plan is None or plan.status is None:
        return 0.0
    return plan.status.cost_per_hour or 0.0


class FailOnError(ValueError):
    """A ``--fail-on`` value that is not a rule; the message says which part and why."""


@dataclass(frozen=True)
class FailOn:
    """What makes a diff fail: judged on what the change does, so a workload that was already
    unplaced (or short of its SLO) before stays a note, not a failure."""

    unplaced: bool = False
    slo: bool = False
    cost_increase_ratio: float | None = None  # e.g. 0.10: fail above +10 % per hour

    @classmethod
    def parse(cls, text: str) -> FailOn:
        """``unplaced,slo,cost-increase=10%`` (any subset; ``none`` or empty: nothing fails)."""
        unplaced = slo = False
        ratio: float | None = None
        for part in (p.strip() for p in text.split(",")):
            if part in ("", "none"):
                continue
            if part == "unplaced":
                unplaced = True
            elif part == "slo":
                slo = True
            elif part.startswith("cost-increase="):
                ratio = _percent(part.removeprefix("cost-increase="))
            else:
                raise FailOnError(
                    f"unknown rule {part!r}: use unplaced, slo and cost-increase=N%, "
                    "comma-separated"
                )
        return cls(unplaced, slo, ratio)

    def failures(self, diff: PlanDiff) -> list[str]:
        """Why ``diff`` fails these rules (empty: it passes)."""
        out: list[str] = []
        for w in diff.workloads:
            if self.unplaced and w.newly_unplaced:
                out.append(f"{w.name} would not be (fully) placed")
            if self.slo and w.newly_missing_slo and not (self.unplaced and w.newly_unplaced):
                out.append(f"{w.name} would miss its SLO")
        limit = self.cost_increase_ratio
        if limit is not None and diff.cost_delta >= COST_EPSILON:
            ratio = diff.cost_delta_ratio
            if ratio is None or ratio > limit + 1e-9:
                shown = "from nothing" if ratio is None else f"+{ratio:.1%}"
                out.append(
                    f"cost per hour would rise {shown} (${diff.cost_before:.2f} -> "
                    f"${diff.cost_after:.2f}), over the {limit:.0%} allowed"
                )
        return out


def _percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise FailOnError(f"cost-increase={text!r}: expected a percentage such as 10%") from None
    if not 0 <= value <= 10_000:
        raise FailOnError(f"cost-increase={text!r}: expected 0% to 10000%")
    return value / 100
