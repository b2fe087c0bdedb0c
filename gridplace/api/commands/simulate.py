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

With ``--truth-bias 1.25,1.5 --recalibrate-every 600`` the plan meets a hidden step-time bias and
the grounded loop (observations, recalibration, replans) runs in simulated time.

Exit codes: 0 simulated; 1 bad input (specs, trace, or a plan naming a missing node, GPU index or
workload); 2 usage.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
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
    TruthBias,
    TruthSettings,
    read_trace,
    simulate,
)
from gridplace.sim.bias import describe, rules_summary
from gridplace.sim.coldstart import ColdStartReport, ColdStartSettings
from gridplace.sim.diurnal import DailyCycle
from gridplace.sim.loop import LoopResult, LoopSettings, run_loop
from gridplace.specs import PlacementPlan, SpecError, SpecIssue, load_bundle
from gridplace.specs.yamlsafe import parse_yaml_text

EXIT_INVALID = 1
NAMED_TRACES = {name: f"AzureLLMInferenceTrace_{name}.csv" for name in ("conv", "code")}
MAX_BIAS_FILE_BYTES = 64 * 1024


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


PlanOption = Annotated[Path, typer.Option("--plan", help="The PlacementPlan to simulate.")]
TraceOption = Annotated[
    Path | None,
    typer.Option("--trace", help="Request trace CSV (Azure LLM inference format), or conv / code."),
]
DiurnalOption = Annotated[
    float | None,
    typer.Option("--diurnal", min=0.01, max=672, help="Follow a daily profile over HOURS hours."),
]
ColdStartsOption = Annotated[
    bool, typer.Option("--cold-starts", help="Restarts and failover take their cold start.")
]
PrewarmOption = Annotated[
    bool,
    typer.Option("--prewarm/--no-prewarm", help="Standbys hold what the plan's prewarm says."),
]
ArrivalsOption = Annotated[
    ArrivalProcess | None,
    typer.Option("--arrivals", help="trace (with --trace), poisson or bursty."),
]
TokensOption = Annotated[
    TokenMode,
    typer.Option("--tokens", help="Trace token counts scaled to each workload's means or as-is."),
]
DurationOption = Annotated[
    float, typer.Option("--duration", min=1, max=7 * 86_400, help="Seconds of traffic.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random draw.")]
IdealOption = Annotated[
    bool,
    typer.Option("--ideal", help="No hidden truth: nodes run as the performance model says."),
]
FailureRateOption = Annotated[
    float | None,
    typer.Option(
        "--failure-rate", min=0, help="Node failures per node-hour (default: from reliability)."
    ),
]
TruthBiasOption = Annotated[
    str | None,
    typer.Option(
        "--truth-bias",
        metavar="DECODE,PREFILL",
        help="Hidden systematic step-time factors for every replica (e.g. 1.25,1.5); the "
        "planner never sees them.",
    ),
]
TruthBiasFileOption = Annotated[
    Path | None,
    typer.Option(
        "--truth-bias-file",
        help="YAML list of {decode, prefill, family?, engine?} hidden step-time factors.",
    ),
]
RecalibrateEveryOption = Annotated[
    float | None,
    typer.Option(
        "--recalibrate-every",
        min=60,
        max=86_400,
        metavar="SECONDS",
        help="Run the grounded loop: replicas report observations, corrections are learned "
        "and plans remade (same functions as the server) every SECONDS.",
    ),
]
PlotOption = Annotated[
    Path | None, typer.Option("--plot", help="Write latency CDFs per workload to this PNG.")
]
OutputFormatOption = Annotated[OutputFormat, typer.Option("--format")]


def command(
    plan: PlanOption,
    nodes: NodesOption,
    workloads: WorkloadsOption,
    probes: ProbesOption = None,
    trace: TraceOption = None,
    diurnal: DiurnalOption = None,
    cold_starts: ColdStartsOption = False,
    prewarm: PrewarmOption = True,
    arrivals: ArrivalsOption = None,
    tokens: TokensOption = TokenMode.SCALED,
    duration: DurationOption = 3600.0,
    seed: SeedOption = 0,
    ideal: IdealOption = False,
    failure_rate: FailureRateOption = None,
    truth_bias: TruthBiasOption = None,
    truth_bias_file: TruthBiasFileOption = None,
    recalibrate_every: RecalibrateEveryOption = None,
    plot: PlotOption = None,
    output_format: OutputFormatOption = OutputFormat.TABLE,
) -> None:
    """Simulate request traffic against a plan; print SLA attainment, latency and cost."""
    process = _arrival_process(arrivals, trace)
    if truth_bias is not None and truth_bias_file is not None:
        raise typer.BadParameter(
            "give --truth-bias or --truth-bias-file, not both", param_hint="--truth-bias"
        )
    with _exit_on_sim_errors():
        truth = _truth(ideal, failure_rate, truth_bias, truth_bias_file)
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
        inputs = SimInputs.from_bundle(bundle)
        if recalibrate_every is not None:
            if plot is not None:
                raise typer.BadParameter("--plot needs a run without --recalibrate-every")
            with render.stderr.status("simulating the loop..."):
                looped = run_loop(inputs, document, settings, LoopSettings(recalibrate_every))
            _print_loop(looped, settings, recalibrate_every, output_format)
            return
        with render.stderr.status("simulating..."):
            result = simulate(document, inputs, settings)
    if output_format is OutputFormat.JSON:
        render.print_json(_as_json(result, settings))
    else:
        _print_table(result, settings)
    if plot is not None:
        _write_plot(result, plot, f"{document.metadata.name}: latency CDFs")


def _arrival_process(arrivals: ArrivalProcess | None, trace: Path | None) -> ArrivalProcess:
    """--arrivals, by default the trace's when one is given (else Poisson); usage errors exit 2."""
    process = arrivals or (ArrivalProcess.TRACE if trace else ArrivalProcess.POISSON)
    if process is ArrivalProcess.TRACE and trace is None:
        raise typer.BadParameter("--arrivals trace needs --trace FILE", param_hint="--arrivals")
    if trace is not None and process is not ArrivalProcess.TRACE:
        raise typer.BadParameter(
            f"--trace replays a trace; it cannot be combined with --arrivals {process.value}",
            param_hint="--trace",
        )
    return process


def _truth(
    ideal: bool, failure_rate: float | None, truth_bias: str | None, truth_bias_file: Path | None
) -> TruthSettings:
    """The hidden truth the simulated grid runs on (at most one of the two biases is given)."""
    truth = TruthSettings.ideal() if ideal else TruthSettings(failure_rate_per_hour=failure_rate)
    if truth_bias is not None:
        return replace(truth, bias=parse_truth_bias(truth_bias))
    if truth_bias_file is not None:
        return replace(truth, bias=read_truth_bias(truth_bias_file))
    return truth


@contextmanager
def _exit_on_sim_errors() -> Iterator[None]:
    """Bad specs, a plan that names what the grid lacks, or a bad trace: the reasons, exit 1."""
    try:
        yield
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


def _write_plot(result: SimResult, plot: Path, title: str) -> None:
    from gridplace.sim.plot import plot_workloads

    try:
        written = plot_workloads(result, plot, title)
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


def parse_truth_bias(text: str) -> TruthBias:
    """``DECODE,PREFILL`` -> one bias rule for every replica."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        decode, prefill = (float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(
            f"expected two factors DECODE,PREFILL (e.g. 1.25,1.5), got {text!r}",
            param_hint="--truth-bias",
        ) from None
    return TruthBias.fixed(decode, prefill)


def read_truth_bias(path: Path) -> TruthBias:
    """Bias rules from a YAML file (``SimError``/``SpecError`` name the file and field)."""
    try:
        size = path.stat().st_size
        if size > MAX_BIAS_FILE_BYTES:
            raise SpecError(
                [SpecIssue(f"{size} bytes; at most {MAX_BIAS_FILE_BYTES}", file=str(path))]
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError([SpecIssue(f"cannot read it: {error}", file=str(path))]) from None
    documents = [d for d in parse_yaml_text(text, str(path)) if d.data is not None]
    if len(documents) != 1:
        raise SpecError(
            [SpecIssue(f"expected one YAML document, found {len(documents)}", file=str(path))]
        )
    return TruthBias.from_rules(documents[0].data, str(path))


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
                f"{s.stall_share:.1%}",
                f"{s.throughput_rps:.2f} / {s.output_tokens_per_s:,.0f}",
                str(s.replicas),
                f"{s.cost_per_hour:.2f}",
            ]
        )
    total = result.total()
    rows.append(
        ["all", f"{total.requests:,}", f"{total.attainment:.2%}", "", "", f"{total.lost:,}",
         f"{total.stall_share:.1%}", "", str(len(result.replica_labels)),
         f"{total.cost_per_hour:.2f}"]
    )  # fmt: skip
    truth = settings.truth
    layers = [n for n, on in (("efficiency", truth.efficiency), ("thermal", truth.thermal),
                              ("failures", truth.failures)) if on]  # fmt: skip
    if truth.bias.rules:
        layers.append(f"bias {rules_summary(truth.bias.rules)}")
    elif truth.bias.measured or truth.bias.drawn:
        layers.append("bias measured/drawn")
    title = (
        f"{settings.duration_s:g} s of {settings.process.value} traffic, seed {settings.seed}, "
        f"hidden truth: {', '.join(layers) or 'off'} ({result.steps:,} steps in "
        f"{result.wall_s:.1f} s)"
    )
    columns = ["workload", "requests", "in SLA", "TTFT p50 / p99 ms (SLO)",
               "ITL p50 / p99 ms (SLO)", "lost", "stalled", "done req/s / tok/s", "replicas",
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


def _print_loop(
    result: LoopResult, settings: SimSettings, every_s: float, output_format: OutputFormat
) -> None:
    if output_format is OutputFormat.JSON:
        render.print_json(
            {
                "durationS": settings.duration_s,
                "seed": settings.seed,
                "recalibrateEveryS": every_s,
                "truth": {"bias": describe(settings.truth.bias)},
                "windows": [p.as_dict() for p in result.periods],
                "total": {
                    "requests": sum(p.requests for p in result.periods),
                    "slaAttainment": round(result.attainment, 6),
                    "costPerHour": round(result.cost_per_hour, 4),
                    "replans": len(result.plans) - 1,
                },
                "calibration": result.calibration.as_dict(),
            }
        )
        return
    rows = [
        [f"{p.start_s:g}-{p.end_s:g}", f"{p.requests:,}", f"{p.attainment:.2%}",
         f"{p.cost_per_hour:.2f}", "-" if p.prediction_error_pct is None
         else f"{p.prediction_error_pct:.1f}%", f"{p.stall_share:.1%}", str(p.replicas),
         f"replan ({len(p.reasons)} reasons)" if p.replanned else ""]
        for p in result.periods
    ]  # fmt: skip
    title = (
        f"grounded loop: {settings.duration_s:g} s, recalibrating every {every_s:g} s; "
        f"{result.attainment:.2%} in SLA at ${result.cost_per_hour:.2f}/h"
    )
    columns = ["window s", "requests", "in SLA", "$/h", "step error", "stalled", "replicas",
               "then"]  # fmt: skip
    render.stdout.print(render.table(title, columns, rows))
    for period in result.periods:
        for reason in period.reasons[:5]:
            render.stderr.print(f"  after {period.end_s:g} s: {escape(reason)}", highlight=False)


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
            "bias": describe(settings.truth.bias),
        },
        "workloads": [s.as_dict() for s in result.summary()],
        "total": {
            "requests": total.requests,
            "slaAttainment": round(total.attainment, 6),
            "violations": total.violations,
            "lost": total.lost,
            "costPerHour": round(total.cost_per_hour, 4),
            "stallShare": round(total.stall_share, 6),
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
