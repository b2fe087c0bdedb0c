"""Prometheus metrics, written by hand in the text exposition format (version 0.0.4).

    gridplace_http_request_duration_seconds   histogram {method, route, status}
    gridplace_plans_solved_total              counter   {trigger}
    gridplace_plan_solve_seconds              histogram {trigger}  (compile + solve)
    gridplace_replans_skipped_total           counter   {reason}
    gridplace_cost_checks_total               counter   {outcome: replanned|kept}
    gridplace_rate_limited_total              counter
    gridplace_nodes                           gauge     {state: healthy|unhealthy|silent}
    gridplace_nodes_healthy                   gauge
    gridplace_plan_generation                 gauge

Routes are labelled by their template (``/v1/nodes/{name}``), never by the raw path, so a scan of
random URLs cannot grow the label set. Must not: import a metrics library (none is a dependency).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from collections.abc import Iterable

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SOLVE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = [*labels, extra] if extra else list(labels)
    if not items:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in items) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.help_text = help_text
        self.buckets = buckets
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, labels: Labels) -> None:
        counts = self._counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sums[labels] += value

    def count(self, labels: Labels) -> int:
        return sum(self._counts.get(labels, []))

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help_text}"
        yield f"# TYPE {self.name} histogram"
        for labels in sorted(self._counts):
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), self._counts[labels], strict=True):
                cumulative += count
                yield f"{self.name}_bucket{_labels(labels, ('le', _number(bound)))} {cumulative}"
            yield f"{self.name}_sum{_labels(labels)} {_number(self._sums[labels])}"
            yield f"{self.name}_count{_labels(labels)} {cumulative}"


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help_text = help_text
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] += amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help_text}"
        yield f"# TYPE {self.name} counter"
        for labels in sorted(self.values):
            yield f"{self.name}{_labels(labels)} {_number(self.values[labels])}"


class Metrics:
    """Every metric of one server; methods are thread-safe (routes run in a thread pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Histogram(
            "gridplace_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and status.",
            LATENCY_BUCKETS_S,
        )
        self.plans_solved = Counter(
            "gridplace_plans_solved_total", "Plans computed and stored, by what asked for them."
        )
        self.solve_seconds = Histogram(
            "gridplace_plan_solve_seconds",
            "Compile plus solve time of stored plans.",
            SOLVE_BUCKETS_S,
        )
        self.replans_skipped = Counter(
            "gridplace_replans_skipped_total", "Change checks that did not replan, by reason."
        )
        self.cost_checks = Counter(
            "gridplace_cost_checks_total",
            "Plans solved afresh to compare costs with the plan in force, by outcome (replanned: "
            "the saving passed the band and the replan was stored).",
        )
        self.rate_limited = Counter(
            "gridplace_rate_limited_total", "Requests refused with 429 (token bucket empty)."
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (("method", method), ("route", route), ("status", str(status)))
        with self._lock:
            self.requests.observe(seconds, labels)

    def plan_solved(self, trigger: str, seconds: float) -> None:
        with self._lock:
            self.plans_solved.inc((("trigger", trigger),))
            self.solve_seconds.observe(seconds, (("trigger", trigger),))

    def replan_skipped(self, reason: str) -> None:
        with self._lock:
            self.replans_skipped.inc((("reason", reason),))

    def cost_checked(self, replanned: bool) -> None:
        with self._lock:
            self.cost_checks.inc((("outcome", "replanned" if replanned else "kept"),))

    def limited(self) -> None:
        with self._lock:
            self.rate_limited.inc()

    def render(self, nodes: dict[str, int], generation: int) -> str:
        """The exposition text; ``nodes`` counts nodes by state, read at scrape time."""
        lines: list[str] = []
        with self._lock:
            for metric in (
                self.requests,
                self.plans_solved,
                self.solve_seconds,
                self.replans_skipped,
                self.cost_checks,
                self.rate_limited,
            ):
                lines.extend(metric.render())
        lines.append("# HELP gridplace_nodes Registered nodes by state (silent: past the grace).")
        lines.append("# TYPE gridplace_nodes gauge")
        for state in sorted(nodes):
            lines.append(f'gridplace_nodes{{state="{state}"}} {nodes[state]}')
        lines.append("# HELP gridplace_nodes_healthy Nodes the planner may use now.")
        lines.append("# TYPE gridplace_nodes_healthy gauge")
        lines.append(f"gridplace_nodes_healthy {nodes.get('healthy', 0)}")
        lines.append("# HELP gridplace_plan_generation Generation of the latest plan (0: none).")
        lines.append("# TYPE gridplace_plan_generation gauge")
        lines.append(f"gridplace_plan_generation {generation}")
        return "\n".join(lines) + "\n"
