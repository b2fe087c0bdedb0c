"""``gridplace simulate``: replay traffic against a plan on a simulated grid; SLA attainment.

Usage with the shipped example::

    gridplace plan -n examples/grid -w examples/workloads -p examples/probes -o plan.yaml
    gridplace simulate --plan plan.yaml -n examples/grid -w examples/workloads \\
        -p examples/probes --trace ../shared/data/traces/AzureLLMInferenceTrace_conv.csv

``--trace conv`` or ``--trace code`` names the Azure LLM inference traces (conversation; code,
bursty) in ``$GRIDPLACE_TRACES`` or ``../shared/data/traces``. ``--diurnal HOURS`` modulates the
rate by a daily profile covering HOURS hours over the run (24 in a one-hour run: a compressed
day); ``--cold-starts`` makes restarts and failover to the plan's ``prewarm`` standbys take their
cold start (``--no-prewarm``: the standbys hold nothing) and reports what that cost.

Exit codes: 0 simulated; 1 bad input (specs, trace, or a plan naming a missing node, GPU index or
workload); 2 usage.
"""

from __future__ import annotations

import math
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from gridplace.api import render
from gridplace.sim import (
    ArrivalProcess,
    PlanReferenceError,
    SimError,
    SimInputs,
    SimResult,
    SimSettings,
    TokenMode,
    TruthSettings,
    read_trace,
    simulate,
)
from gridplace.sim.coldstart import ColdStartReport, ColdStartSettings
from gridplace.sim.diurnal import DailyCycle
from gridplace.specs import PlacementPlan, SpecError, SpecIssue, load_bundle

EXIT_INVALID = 1
NAMED_TRACES = {name: f"AzureLLMInferenceTrace_{name}.csv" for name in ("conv", "code")}


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


NodesOption = Annotated[
    list[Path], typer.Option("--nodes", "-n", help="Node YAML file or directory (repeatable).")
]
WorkloadsOption = Annotated[
    list[Path], typer.Option("--workloads", "-w", help="Workload YAML file or directory.")
]
ProbesOption = Annotated[
    list[Path] | None, typer.Option("--probes", "-p", help="LatencyProbes file or directory.")
]


def command(
    plan: Annotated[Path, typer.Option("--plan", help="The PlacementPlan to simulate.")],
    nodes: NodesOption,
    workloads: WorkloadsOption,
    probes: ProbesOption = None,
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace", help="Request trace CSV (Azure LLM inference format), or conv / code."
        ),
    ] = None,
    diurnal: Annotated[
        float | None,
        typer.Option(
            "--diurnal", min=0.01, max=672, help="Follow a daily profile over HOURS hours."
        ),
    ] = None,
    cold_starts: Annotated[
        bool, typer.Option("--cold-starts", help="Restarts and failover take their cold start.")
    ] = False,
    prewarm: Annotated[
        bool,
        typer.Option("--prewarm/--no-prewarm", help="Standbys hold what the plan's prewarm says."),
    ] = True,
    arrivals: Annotated[
        ArrivalProcess | None,
        typer.Option("--arrivals", help="trace (with --trace), poisson or bursty."),
    ] = None,
    tokens: Annotated[
        TokenMode,
        typer.Option(
            "--tokens", help="Trace token counts scaled to each workload's means or as-is."
        ),
    ] = TokenMode.SCALED,
    duration: Annotated[
        float, typer.Option("--duration", min=1, max=7 * 86_400, help="Seconds of traffic.")
    ] = 3600.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    ideal: Annotated[
        bool,
        typer.Option("--ideal", help="No hidden truth: nodes run as the performance model says."),
    ] = False,
    failure_rate: Annotated[
        float | None,
        typer.Option(
            "--failure-rate", min=0, help="Node failures per node-hour (default: from reliability)."
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write latency CDFs per workload to this PNG.")
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.TABLE,
) -> None:
    """Simulate request traffic against a plan; print SLA attainment, latency and cost."""
    process = arrivals or (ArrivalProcess.TRACE if trace else ArrivalProcess.POISSON)
    if process is ArrivalProcess.TRACE and trace is None:
        raise typer.BadParameter("--arrivals trace needs --trace FILE", param_hint="--arrivals")
    if trace is not None and process is not ArrivalProcess.TRACE:
        raise typer.BadParameter(
            f"--trace replays a trace; it cannot be combined with --arrivals {process.value}",
            param_hint="--trace",
        )
    truth = TruthSettings.ideal() if ideal else TruthSettings(failure_rate_per_hour=failure_rate)
    try:
        bundle = load_bundle([*nodes, *workloads, *(probes or [])])
        document = _load_plan(plan)
        settings = SimSettings(
            duration_s=duration,
            seed=seed,
            process=process,
            trace=read_trace(_trace_path(trace)) if trace else None,
            tokens=tokens,
            truth=truth,
            diurnal=DailyCycle(diurnal) if diurnal else None,
            cold_starts=ColdStartSettings(prewarm=prewarm) if cold_starts else None,
        )
        with render.stderr.status("simulating..."):
            result = simulate(document, SimInputs.from_bundle(bundle), settings)
    except SpecError as error:
        render.print_issues(error.issues)
        raise typer.Exit(EXIT_INVALID) from None
    except PlanReferenceError as error:
        render.stderr.print(
            f"[bold red]error:[/] the plan cannot be simulated ({len(error.problems)} problem"
            f"{'s' * (len(error.problems) != 1)})"
        )
        for label, what in error.problems:
            render.stderr.print(f"  [cyan]{escape(label)}[/]: {escape(what)}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except SimError as error:
        render.stderr.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    if output_format is OutputFormat.JSON:
        render.print_json(_as_json(result, settings))
    else:
        _print_table(result, settings)
    if plot is not None:
        from gridplace.sim.plot import plot_workloads

        try:
            written = plot_workloads(result, plot, f"{document.metadata.name}: latency CDFs")
        except OSError as error:
            render.stderr.print(f"[bold red]error:[/] cannot write {plot}: {error.strerror}")
            raise typer.Exit(EXIT_INVALID) from None
        render.stderr.print(f"plot written to {escape(str(written))}", highlight=False)


def _trace_path(trace: Path) -> Path:
    """A trace file, or one of the named Azure traces (``NAMED_TRACES``)."""
    name = NAMED_TRACES.get(str(trace))
    if name is None or trace.exists():
        return trace
    folder = os.environ.get("GRIDPLACE_TRACES")
    return (Path(folder) if folder else Path("..") / "shared" / "data" / "traces") / name


def _load_plan(path: Path) -> PlacementPlan:
    plans = load_bundle([path]).plans
    if len(plans) != 1:
        raise SpecError(
            [SpecIssue(f"expected one PlacementPlan, found {len(plans)}", file=str(path))]
        )
    return plans[0]


def _ms(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) else "inf"


def _print_table(result: SimResult, settings: SimSettings) -> None:
    rows = []
    for s in result.summary():
        rows.append(
            [
                s.name,
                f"{s.requests:,}",
                f"{s.attainment:.2%}",
                f"{_ms(s.ttft_p50_ms)} / {_ms(s.ttft_p99_ms)} ({s.ttft_slo_ms:g})",
                f"{s.itl_p50_ms:.1f} / {s.itl_p99_ms:.1f} ({s.itl_slo_ms:g})"
                if math.isfinite(s.itl_p99_ms)
                else f"{s.itl_p50_ms:.1f} / inf ({s.itl_slo_ms:g})",
                f"{s.lost:,}",
                f"{s.throughput_rps:.2f} / {s.output_tokens_per_s:,.0f}",
                str(s.replicas),
                f"{s.cost_per_hour:.2f}",
            ]
        )
    total = result.total()
    rows.append(
        ["all", f"{total.requests:,}", f"{total.attainment:.2%}", "", "", f"{total.lost:,}", "",
         str(len(result.replica_labels)), f"{total.cost_per_hour:.2f}"]
    )  # fmt: skip
    truth = settings.truth
    layers = [n for n, on in (("efficiency", truth.efficiency), ("thermal", truth.thermal),
                              ("failures", truth.failures)) if on]  # fmt: skip
    title = (
        f"{settings.duration_s:g} s of {settings.process.value} traffic, seed {settings.seed}, "
        f"hidden truth: {', '.join(layers) or 'off'} ({result.steps:,} steps in "
        f"{result.wall_s:.1f} s)"
    )
    columns = ["workload", "requests", "in SLA", "TTFT p50 / p99 ms (SLO)",
               "ITL p50 / p99 ms (SLO)", "lost", "done req/s / tok/s", "replicas",
               "$/h"]  # fmt: skip
    render.stdout.print(render.table(title, columns, rows))
    if settings.cold_starts is not None:
        report = ColdStartReport.of(result)
        render.stdout.print(
            f"cold starts: {report.cold_starts}, requests sent during one: "
            f"{report.requests_during:,}, serving again after a node loss: mean "
            f"{report.mean_recovery_s:.0f} s, max {report.max_recovery_s:.0f} s; failovers "
            f"to standbys: {len(report.failover_s)}, mean {report.mean_failover_s:.0f} s"
        )


def _as_json(result: SimResult, settings: SimSettings) -> dict[str, object]:
    total = result.total()
    return {
        "durationS": settings.duration_s,
        "seed": settings.seed,
        "arrivals": settings.process.value,
        "tokens": settings.tokens.value,
        "truth": {
            "efficiency": settings.truth.efficiency,
            "thermal": settings.truth.thermal,
            "failures": settings.truth.failures,
        },
        "workloads": [s.as_dict() for s in result.summary()],
        "total": {
            "requests": total.requests,
            "slaAttainment": round(total.attainment, 6),
            "violations": total.violations,
            "lost": total.lost,
            "costPerHour": round(total.cost_per_hour, 4),
        },
        "steps": result.steps,
        "wallSeconds": round(result.wall_s, 3),
        **({"coldStarts": _cold_json(result)} if settings.cold_starts is not None else {}),
    }


def _cold_json(result: SimResult) -> dict[str, object]:
    report = ColdStartReport.of(result)
    return {
        "count": report.cold_starts,
        "requestsDuring": report.requests_during,
        "meanRecoveryS": round(report.mean_recovery_s, 2),
        "maxRecoveryS": round(report.max_recovery_s, 2),
        "failovers": len(report.failover_s),
        "meanFailoverS": round(report.mean_failover_s, 2),
    }
