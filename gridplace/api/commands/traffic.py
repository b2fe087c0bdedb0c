"""``gridplace traffic fit TRACE.csv``: measure a request trace and print the workload's
``traffic`` block (rate, mean sizes, burstiness), with the size distributions as comments.

Exit codes: 0 fitted; 1 a trace that cannot be read or fitted; 2 usage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape

from gridplace.api import render
from gridplace.planner.traffic_fit import DEFAULT_WINDOWS_S, FitError, TrafficFit, fit_traffic
from gridplace.sim import SimError, read_trace

EXIT_INVALID = 1
MAX_TRACE_BYTES = 512 * 1024 * 1024
MAX_WINDOWS = 16

app = typer.Typer(help="Measure traffic: rate, request sizes and burstiness.", no_args_is_help=True)


def _windows(text: str) -> tuple[float, ...]:
    try:
        windows = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected seconds separated by commas, got {text!r}") from None
    if not windows or len(windows) > MAX_WINDOWS or any(not 0 < w <= 86_400 for w in windows):
        raise typer.BadParameter(
            f"expected 1 to {MAX_WINDOWS} window lengths in (0, 86400] s, got {text!r}"
        )
    if len(set(windows)) != len(windows):
        raise typer.BadParameter(f"window lengths must be distinct, got {text!r}")
    return windows


def traffic_block(fit: TrafficFit, region: str | None) -> str:
    """The ``traffic:`` YAML block of a fit, with what it measured as comments."""
    block: dict[str, object] = {
        "requestsPerSecond": round(fit.rate_rps, 4),
        "promptTokens": max(1, round(fit.prompt.mean)),
        "outputTokens": max(1, round(fit.output.mean)),
        "burstiness": {
            "windows": [
                {"windowS": w.window_s, "peakToMean": round(w.peak_to_mean, 3)}
                for w in fit.burstiness.windows
            ]
        },
    }
    if region is not None:
        block["sources"] = [{"region": region, "share": 1.0}]
    comments = [
        f"# {fit.requests:,} requests over {fit.span_s:,.0f} s; inter-arrival squared "
        f"coefficient of variation {fit.interarrival_scv:.2f} (1 = Poisson)",
        *(
            f"# {name} tokens: mean {s.mean:.0f}, p50 {s.p50:.0f}, p99 {s.p99:.0f}, "
            f"squared coefficient of variation {s.scv:.2f}"
            for name, s in (("prompt", fit.prompt), ("output", fit.output))
        ),
        "# burstiness: p99 of the windowed rate / mean, Poisson count noise taken out",
    ]
    if region is None:
        comments.append("# add sources: [{region: ..., share: ...}] (or pass --region)")
    text = yaml.safe_dump({"traffic": block}, sort_keys=False, default_flow_style=None)
    return "\n".join(comments) + "\n" + text


@app.command("fit")
def fit_command(
    trace: Annotated[Path, typer.Argument(help="Request trace CSV (Azure LLM trace format).")],
    windows: Annotated[
        str, typer.Option("--windows", help="Window lengths for burstiness, s, comma-separated.")
    ] = ",".join(f"{w:g}" for w in DEFAULT_WINDOWS_S),
    region: Annotated[
        str | None, typer.Option("--region", help="Client region of every request (sources).")
    ] = None,
) -> None:
    """Fit a trace and print the workload's traffic block."""
    lengths = _windows(windows)
    try:
        size = trace.stat().st_size
    except OSError as error:
        render.stderr.print(
            f"[bold red]error:[/] {escape(str(trace))}: {escape(error.strerror or '')}"
        )
        raise typer.Exit(EXIT_INVALID) from None
    if size > MAX_TRACE_BYTES:
        render.stderr.print(
            f"[bold red]error:[/] {escape(str(trace))}: {size:,} bytes, more than the "
            f"{MAX_TRACE_BYTES:,} a trace may have"
        )
        raise typer.Exit(EXIT_INVALID)
    try:
        loaded = read_trace(trace)
        fitted = fit_traffic(loaded.times_s, loaded.prompt_tokens, loaded.output_tokens, lengths)
    except (SimError, FitError) as error:
        render.stderr.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo(traffic_block(fitted, region), nl=False)
