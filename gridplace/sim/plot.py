"""Latency CDF plots of simulation results (matplotlib, Agg backend: no display needed).

Owns: the figures. Must not: simulate or print. Latencies are drawn relative to their
workload's target (1.0 = the SLO), so workloads with different targets share an axis and the
SLA line; a request that never got a figure (lost, unfinished) keeps the curve below 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gridplace.sim.metrics import SimResult

MAX_POINTS = 2000  # per curve; enough for a smooth line, small files


def _cdf(values: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
    """(x, share of all values <= x) over the finite values; infinite ones lower the top."""
    total = len(values)
    finite = np.sort(values[np.isfinite(values)])
    if total == 0 or len(finite) == 0:
        return np.zeros(0), np.zeros(0)
    share = np.arange(1, len(finite) + 1) / total
    if len(finite) > MAX_POINTS:
        pick = np.unique(np.linspace(0, len(finite) - 1, MAX_POINTS).astype(int))
        finite, share = finite[pick], share[pick]
    return finite, share


def _relative(result: SimResult) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    ttft_slo = np.array([w.ttft_slo_ms for w in result.workloads])[result.workload]
    itl_slo = np.array([w.itl_slo_ms for w in result.workloads])[result.workload]
    return result.ttft_ms / ttft_slo, result.itl_mean_ms / itl_slo


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel(axis: Any, title: str) -> None:
    axis.axvline(1.0, color="black", linestyle="--", linewidth=0.8)
    axis.set_xscale("log")
    axis.set_ylim(0, 1.01)
    axis.set_title(title, fontsize=9)
    axis.grid(True, which="both", alpha=0.3)


def plot_workloads(result: SimResult, path: Path | str, title: str = "") -> Path:
    """One panel per workload: CDFs of TTFT and mean ITL over their targets."""
    plt = _pyplot()
    relative_ttft, relative_itl = _relative(result)
    summaries = result.summary()
    columns = 3
    rows = max(1, math.ceil(len(summaries) / columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False, sharex=True
    )
    for index, summary in enumerate(summaries):
        axis = axes[index // columns][index % columns]
        mine = result.workload == index
        for values, label in ((relative_ttft[mine], "TTFT"), (relative_itl[mine], "mean ITL")):
            x, y = _cdf(values)
            axis.plot(x, y, label=label, linewidth=1.2)
        _panel(axis, f"{summary.name}: {summary.attainment:.1%} in SLA")
    for index in range(len(summaries), rows * columns):
        axes[index // columns][index % columns].axis("off")
    axes[0][0].legend(fontsize=8, loc="lower right")
    for axis in axes[-1]:
        axis.set_xlabel("latency / target")
    figure.suptitle(title or "Latency CDFs per workload (1 = SLO target)", fontsize=11)
    figure.tight_layout()
    return _save(figure, plt, path)


def plot_comparison(
    groups: Mapping[str, Mapping[str, SimResult]], path: Path | str, title: str = ""
) -> Path:
    """Per group (e.g. a grid), CDFs of TTFT and mean ITL over target, one line per run."""
    plt = _pyplot()
    figure, axes = plt.subplots(
        len(groups), 2, figsize=(10, 3.4 * len(groups)), squeeze=False, sharex=True
    )
    for row, (group, runs) in enumerate(groups.items()):
        for label, result in runs.items():
            relative_ttft, relative_itl = _relative(result)
            share = result.total().attainment
            for column, values in enumerate((relative_ttft, relative_itl)):
                x, y = _cdf(values)
                axes[row][column].plot(x, y, label=f"{label} ({share:.1%})", linewidth=1.2)
        _panel(axes[row][0], f"{group}: TTFT / target")
        _panel(axes[row][1], f"{group}: mean ITL / target")
        axes[row][0].legend(fontsize=8, loc="lower right")
    for axis in axes[-1]:
        axis.set_xlabel("latency / target (all requests)")
    figure.suptitle(title or "Latency CDFs (1 = SLO target)", fontsize=11)
    figure.tight_layout()
    return _save(figure, plt, path)


def _save(figure: Any, plt: Any, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
