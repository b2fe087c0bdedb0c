"""Fit an engine generation's host and all-reduce figures (``perfmodel.generations``) on end-to-end
measurements taken on that stack, and the held-out folds the accuracy benchmark reports.

Everything else is held fixed: the efficiency table (fitted on operator timings only), the model
shapes, the GPU catalog and the eager launch prior (``EngineTraits.eager_op_us``). Fitted:
- ``step_overhead_ms``, ``sequence_overhead_us``: host time per step and per running sequence;
- ``allreduce_bandwidth_share``: share of the link's all-reduce bandwidth the stack reaches;
- ``weight_bandwidth_share``: share of today's memory-bound weight-multiply efficiency;
- one ``host_time_factor`` per measured machine (its host CPU; the planner cannot see it).
A machine that is held out of a fit gets host_time_factor 1.0, the host of the priors.

Method: coordinate search, each coordinate by a 9-point grid refined three times around the best
point, six rounds; the loss is the mean over TTFT and ITL of the mean |log(predicted /
measured)| (each metric counts once whatever its number of points).

The measurements are the Splitwise rows of ``bench/perfmodel_accuracy.py`` (its ``splitwise_cases``:
../shared/data/splitwise/data/perf_model.csv, MIT). Prints the fit on every row (the figures
``generations.VLLM_2023`` ships) with its residuals.

Reproduce:
    .venv/bin/python bench/calibrate_perfmodel_stack.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gridplace.planner.perfmodel import EngineGeneration

COMMAND = ".venv/bin/python bench/calibrate_perfmodel_stack.py --data ../shared/data"
# (field, lower, upper): the search box of each generation figure.
BOUNDS = {
    "step_overhead_ms": (0.0, 30.0),
    "sequence_overhead_us": (0.0, 1000.0),
    "allreduce_bandwidth_share": (0.05, 1.0),
    "weight_bandwidth_share": (0.5, 1.0),
}
HOST_BOUNDS = (0.4, 3.0)
ROUNDS = 6


class Measured(Protocol):
    """What the fit needs of a measured point."""

    gpu: str  # the machine: one host CPU per GPU type in the data
    metric: str  # "ttft" or "itl"
    measured_ms: float


Predict = Callable[[Measured, EngineGeneration, float], float]


@dataclass(frozen=True)
class StackFit:
    generation: EngineGeneration
    host_factors: dict[str, float]  # machine -> host_time_factor
    loss: float
    points: int

    def host(self, machine: str) -> float:
        """A machine the fit saw gets its factor; any other the priors' host (1.0)."""
        return self.host_factors.get(machine, 1.0)

    def describe(self) -> str:
        g = self.generation
        hosts = ", ".join(f"{m} {f:.2f}" for m, f in sorted(self.host_factors.items()))
        return (
            f"step {g.step_overhead_ms:.1f} ms, sequence {g.sequence_overhead_us:.0f} us, "
            f"all-reduce share {g.allreduce_bandwidth_share:.3f}, weight bandwidth share "
            f"{g.weight_bandwidth_share:.2f}; host factor {hosts}"
        )


def _loss(
    points: Sequence[Measured],
    predict: Predict,
    generation: EngineGeneration,
    hosts: dict[str, float],
) -> float:
    by_metric: dict[str, list[float]] = {}
    for point in points:
        predicted = predict(point, generation, hosts.get(point.gpu, 1.0))
        by_metric.setdefault(point.metric, []).append(abs(math.log(predicted / point.measured_ms)))
    return sum(sum(v) / len(v) for v in by_metric.values()) / len(by_metric)


def _search(loss: Callable[[float], float], low: float, high: float, start: float) -> float:
    """Best value of a 1-D loss in [low, high]: a 9-point grid refined three times."""
    best, best_loss = start, loss(start)
    for _ in range(3):
        step = (high - low) / 8
        for i in range(9):
            value = low + i * step
            current = loss(value)
            if current < best_loss:
                best, best_loss = value, current
        low, high = max(low, best - step), min(high, best + step)
    return best


def fit_stack(points: Sequence[Measured], predict: Predict, start: EngineGeneration) -> StackFit:
    """Fit ``start``'s figures and one host factor per machine on ``points`` (see the docstring)."""
    generation = start
    hosts = {point.gpu: 1.0 for point in points}
    for _ in range(ROUNDS):
        for name, (low, high) in BOUNDS.items():

            def by_field(
                value: float, name: str = name, generation: EngineGeneration = generation
            ) -> float:
                candidate = dataclasses.replace(generation, **{name: value})
                return _loss(points, predict, candidate, hosts)

            best = _search(by_field, low, high, getattr(generation, name))
            generation = dataclasses.replace(generation, **{name: best})
        for machine in sorted(hosts):

            def by_host(
                value: float, machine: str = machine, generation: EngineGeneration = generation
            ) -> float:
                return _loss(points, predict, generation, {**hosts, machine: value})

            hosts[machine] = _search(by_host, *HOST_BOUNDS, hosts[machine])
    rounded = dataclasses.replace(
        generation,
        step_overhead_ms=round(generation.step_overhead_ms, 1),
        sequence_overhead_us=round(generation.sequence_overhead_us),
        allreduce_bandwidth_share=round(generation.allreduce_bandwidth_share, 3),
        weight_bandwidth_share=round(generation.weight_bandwidth_share, 2),
    )
    hosts = {machine: round(value, 2) for machine, value in hosts.items()}
    return StackFit(rounded, hosts, _loss(points, predict, rounded, hosts), len(points))


def main(argv: list[str] | None = None) -> int:
    import perfmodel_accuracy as accuracy  # the cases and their predictions live there

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=accuracy.DEFAULT_DATA)
    args = parser.parse_args(argv)
    points = accuracy.stack_points(args.data)
    if not points:
        print(f"no Splitwise data under {args.data} (pass --data)", file=sys.stderr)
        return 1
    fit = fit_stack(points, accuracy.predicted_with, accuracy.STACK_START)
    print(
        f"fit of the vllm-2023 generation on {fit.points} Splitwise points (reproduce: {COMMAND})"
    )
    print(f"  {fit.describe()}")
    print(f"  loss (mean |log ratio| per metric, averaged): {fit.loss:.4f}")
    for metric in ("ttft", "itl"):
        errors = [
            accuracy.predicted_with(p, fit.generation, fit.host(p.gpu)) / p.measured_ms - 1
            for p in points
            if p.metric == metric
        ]
        print(f"  in-sample {metric.upper():4} {accuracy.summary(errors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
