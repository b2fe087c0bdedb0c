"""The ``gridplace`` command line (typer + rich). Exit codes follow DESIGN.md: 0 success, 1 bad
input or an unplaceable workload, 2 usage errors (typer's own), 3 a plan with unplaced workloads.

Only requested output goes to stdout; messages, progress and errors go to stderr. A user error
never prints a traceback.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from gridplace import __version__
from gridplace.api import render
from gridplace.api.checks import WorkloadCheck, check_workloads
from gridplace.api.commands import agent as agent_command
from gridplace.api.commands import calibrate as calibrate_command
from gridplace.api.commands import calibration as calibration_command
from gridplace.api.commands import diff as diff_command
from gridplace.api.commands import inventory as inventory_command
from gridplace.api.commands import plan, probe
from gridplace.api.commands import predict as predict_command
from gridplace.api.commands import serve as serve_command
from gridplace.api.commands import simulate as simulate_command
from gridplace.api.commands import traffic as traffic_command
from gridplace.api.remote import GridApi, RemoteError, read_token
from gridplace.api.wiring import load_planning_inputs
from gridplace.specs import (
    SpecBundle,
    SpecError,
    SpecIssue,
    build_bundle,
    builtin_catalog,
)
from gridplace.specs.loader import load_documents
from gridplace.specs.schema import json_schema, kind_names

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_UNPLACED = 3

app = typer.Typer(
    name="gridplace",
    help="Plan where LLM inference runs on a heterogeneous GPU grid, and put it there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ValidateFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    JUNIT = "junit"


class CatalogKind(StrEnum):
    GPUS = "gpus"
    MODELS = "models"


class ListFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


WorkloadsOption = Annotated[
    list[Path],
    typer.Option("--workloads", "-w", help="Workload YAML file or directory (repeatable)."),
]
ProbesOption = Annotated[
    list[Path] | None,
    typer.Option("--probes", "-p", help="LatencyProbes YAML file or directory (repeatable)."),
]


def load_inputs(*groups: list[Path] | None) -> SpecBundle:
    paths = [path for group in groups if group for path in group]
    return load_planning_inputs(paths, warn=render.warn)


@app.command()
def validate(
    workloads: WorkloadsOption,
    nodes: Annotated[
        list[Path] | None,
        typer.Option(
            "--nodes", "-n", help="Node YAML file or directory (repeatable); optional with --api."
        ),
    ] = None,
    probes: ProbesOption = None,
    output_format: Annotated[
        ValidateFormat, typer.Option("--format", help="text, json or junit.")
    ] = ValidateFormat.TEXT,
    api: diff_command.ApiOption = None,
    token_file: diff_command.TokenFileOption = None,
) -> None:
    """Check specs (schema, references) and whether each workload can be placed at all; with
    --api, against the grid's stored inventory and probes (unless -n/-p files are given)."""
    if api is None and not nodes:
        raise typer.BadParameter(
            "give the nodes (-n), or --api URL to use a grid's", param_hint="--nodes"
        )
    try:
        if api is None:
            bundle = load_inputs(nodes, workloads, probes)
            checks = check_workloads(bundle)
            scope = (
                f"{len(bundle.nodes)} nodes, {len(bundle.workloads)} workloads, "
                f"{sum(len(p.spec.samples) for p in bundle.probes)} probe samples"
            )
        else:
            checks, scope = _validate_remote(
                api, token_file, [*(nodes or []), *workloads, *(probes or [])]
            )
    except SpecError as error:
        _report_validation(error.issues, [], output_format, "")
        raise typer.Exit(EXIT_INVALID) from None
    except RemoteError as error:
        if error.issues:  # the server found the documents invalid (a 422)
            _report_validation(error.issues, [], output_format, "")
        else:
            render.stderr.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    _report_validation([], checks, output_format, scope)
    if any(not check.ok for check in checks):
        raise typer.Exit(EXIT_INVALID)


def _validate_remote(
    api: str, token_file: Path | None, paths: list[Path]
) -> tuple[list[WorkloadCheck], str]:
    """The server's placeability checks of the local documents (checked here first, so that
    problems are reported by file and line)."""
    documents = load_documents(paths)
    bundle = build_bundle(documents)
    with GridApi(api, read_token(token_file)) as grid:
        answer = grid.validate(documents)
    checks = [
        WorkloadCheck(
            workload=entry.name,
            ok=entry.placeable,
            reasons=entry.reasons,
            origin=bundle.origin("InferenceWorkload", entry.name),
        )
        for entry in answer.workloads
    ]
    scope = f"{len(bundle.workloads)} workloads against the grid at {grid.url}"
    return checks, scope


def _report_validation(
    issues: list[SpecIssue],
    checks: list[WorkloadCheck],
    output_format: ValidateFormat,
    scope: str,
) -> None:
    unplaceable = [c for c in checks if not c.ok]
    valid = not issues and not unplaceable
    if output_format is ValidateFormat.JSON:
        render.print_json(
            {
                "valid": valid,
                "issues": [issue.as_dict() for issue in issues],
                "workloads": [
                    {"name": c.workload, "placeable": c.ok, "reasons": c.reasons} for c in checks
                ],
            }
        )
        return
    if output_format is ValidateFormat.JUNIT:
        cases = [
            (issue.file or "input", issue.location(), [issue.message]) for issue in issues
        ] or [("specs", "schema and references", [])]
        cases += [("placeability", c.workload, c.reasons) for c in checks]
        print(render.junit_xml("gridplace.validate", cases))
        return
    if issues:
        render.print_issues(issues)
        return
    for check in checks:
        mark = "[green]ok[/]" if check.ok else "[red]unplaceable[/]"
        render.stdout.print(f"{mark} {check.workload}", highlight=False)
        for reason in check.reasons:
            render.stdout.print(f"    {escape(reason)}", highlight=False)
    summary = f"{scope}: " + (
        "valid" if valid else f"{len(unplaceable)} workload(s) cannot be placed"
    )
    render.stdout.print(summary, highlight=False)


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(kind_names())}.")],
) -> None:
    """Print the JSON Schema of a kind."""
    try:
        document = json_schema(kind)
    except KeyError as error:
        render.stderr.print(f"[bold red]error:[/] {error.args[0]}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    render.print_json(document)


@app.command()
def catalog(
    what: Annotated[CatalogKind, typer.Argument(help="gpus or models.")],
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.TABLE,
) -> None:
    """List the built-in GPU or model catalog."""
    cat = builtin_catalog()
    if what is CatalogKind.GPUS:
        entries = {gid: gpu.to_yaml_dict() for gid, gpu in cat.gpus.items()}
        rows = [
            [
                gid,
                gpu.display_name,
                gpu.architecture.value,
                f"{gpu.memory_gib:g}",
                f"{gpu.memory_bandwidth_gbps:g}",
                _tflops(gpu.tensor_tflops.bf16 or gpu.tensor_tflops.fp16),
                _tflops(gpu.tensor_tflops.fp8),
                _tflops(gpu.tensor_tflops.int8),
                f"{gpu.tdp_watts:g}",
                f"gen{gpu.pcie.generation} x{gpu.pcie.lanes}",
            ]
            for gid, gpu in cat.gpus.items()
        ]
        columns = [
            "id",
            "name",
            "arch",
            "GiB",
            "GB/s",
            "bf16/fp16 TF",
            "fp8 TF",
            "int8 TOPS",
            "W",
            "PCIe",
        ]
    else:
        entries = {mid: model.to_yaml_dict() for mid, model in cat.models.items()}
        rows = [
            [
                mid,
                model.hugging_face_repo or "",
                f"{model.parameters_billion:g}",
                f"{model.active_parameters_billion:g}" if model.active_parameters_billion else "",
                str(model.layers),
                str(model.hidden_size),
                f"{model.attention_heads}/{model.kv_heads}",
                f"{model.max_context_tokens:,}",
            ]
            for mid, model in cat.models.items()
        ]
        columns = [
            "id",
            "Hugging Face repo",
            "params B",
            "active B",
            "layers",
            "hidden",
            "heads/kv",
            "context",
        ]
    if output_format is ListFormat.JSON:
        render.print_json(entries)
    elif output_format is ListFormat.YAML:
        render.print_yaml([entries])
    else:
        render.stdout.print(render.table(f"{what.value} ({len(rows)})", columns, rows))


def _tflops(value: float | None) -> str:
    return f"{value:g}" if value is not None else "-"


def _version(value: bool) -> None:
    if value:
        print(f"gridplace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """gridplace: placement planning for LLM inference on heterogeneous GPU grids."""


app.command(name="plan")(plan.command)
app.command(name="explain")(plan.explain)
app.command(name="diff")(diff_command.command)
app.command(name="probe")(probe.command)
app.command(name="inventory")(inventory_command.command)
app.command(name="predict")(predict_command.command)
app.command(name="calibrate")(calibrate_command.command)
app.command(name="serve")(serve_command.command)
app.command(name="simulate")(simulate_command.command)
app.command(name="agent")(agent_command.command)
app.add_typer(traffic_command.app, name="traffic")
app.command(name="calibration")(calibration_command.command)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
