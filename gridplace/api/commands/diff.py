"""``gridplace diff``: what a change of workloads would do to the grid, like ``terraform plan``.

Against a live grid (``--api URL``, token from ``GRIDPLACE_TOKEN`` or ``--token-file``; a viewer
token will do): the server's dry run of the workloads, compared with the plan it was computed
from. Against files (``--previous PLAN -n NODES [-p PROBES]``): a local replan from PLAN.
Output: text, json, or markdown (for a pull-request comment). Exit codes: 0 the change passes
``--fail-on``; 1 bad input or the API refused or was unreachable; 2 usage; 3 the change fails a
``--fail-on`` rule (the diff is printed all the same).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from gridplace.api import render
from gridplace.api.commands.plan import ProbesOption, TimeLimitOption, WorkloadsOption
from gridplace.api.diff import Change, FailOn, FailOnError, PlanDiff, WorkloadDiff, diff_plans
from gridplace.api.remote import GridApi, RemoteError, read_token
from gridplace.api.wiring import PlanRequest, load_previous, run_plan
from gridplace.specs import SpecError, SpecIssue, build_bundle
from gridplace.specs.loader import LoadedDocument, load_documents

EXIT_INVALID = 1
EXIT_FAILED = 3


class DiffFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


ApiOption = Annotated[
    str | None, typer.Option("--api", help="The grid's API, e.g. http://127.0.0.1:8700.")
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", help="File holding the API token (default: $GRIDPLACE_TOKEN)."),
]


def command(
    workloads: WorkloadsOption,
    api: ApiOption = None,
    token_file: TokenFileOption = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="Without --api: the plan in force (file).")
    ] = None,
    nodes: Annotated[
        list[Path] | None,
        typer.Option("--nodes", "-n", help="With --previous: Node YAML file or directory."),
    ] = None,
    probes: ProbesOption = None,
    output_format: Annotated[
        DiffFormat, typer.Option("--format", help="text, json or markdown.")
    ] = DiffFormat.TEXT,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="Exit 3 when the change leaves a workload unplaced, misses an SLO, or raises "
            "the cost per hour by more than N%: e.g. unplaced,slo,cost-increase=10%.",
        ),
    ] = "",
    time_limit: TimeLimitOption = 10.0,
) -> None:
    """What these workloads would change on the grid: replicas, latency, SLOs, cost per hour."""
    try:
        rules = FailOn.parse(fail_on)
    except FailOnError as error:
        raise typer.BadParameter(str(error), param_hint="--fail-on") from None
    if (api is None) == (previous is None):
        raise typer.BadParameter("give either --api URL or --previous PLAN (with -n NODES)")
    if api is None and not nodes:
        raise typer.BadParameter("--previous needs the nodes it was planned on (-n NODES)")
    if api is not None and (nodes or probes):
        raise typer.BadParameter("--api plans on the grid's stored nodes and probes; drop -n/-p")
    try:
        documents = load_documents(workloads)
        slos = _slos(documents)
        if api is not None:
            build_bundle(documents)  # reference errors by file and line, before asking the grid
            diff = _diff_api(api, read_token(token_file), documents, slos)
        else:
            assert previous is not None and nodes
            diff = _diff_files(previous, nodes, workloads, probes or [], time_limit, slos)
    except SpecError as error:
        render.print_issues(error.issues)
        raise typer.Exit(EXIT_INVALID) from None
    except RemoteError as error:
        _print_remote_error(error)
        raise typer.Exit(EXIT_INVALID) from None
    failures = rules.failures(diff)
    if output_format is DiffFormat.JSON:
        render.print_json(diff.as_dict() | {"failures": failures})
    elif output_format is DiffFormat.MARKDOWN:
        print(markdown(diff, failures))
    else:
        print_text(diff, failures)
    if failures:
        raise typer.Exit(EXIT_FAILED)


def _slos(documents: list[LoadedDocument]) -> dict[str, tuple[float, float]]:
    slos = {}
    for document in documents:
        if document.kind == "InferenceWorkload":
            slo = document.obj.spec.slo
            slos[document.obj.metadata.name] = (slo.ttft_ms, slo.itl_ms)
    if not slos:
        raise SpecError([SpecIssue("no InferenceWorkload in the workload files", field="kind")])
    return slos


def _diff_api(
    url: str, token: str, documents: list[LoadedDocument], slos: dict[str, tuple[float, float]]
) -> PlanDiff:
    with GridApi(url, token) as grid, render.stderr.status("dry run on the grid..."):
        after, base = grid.dry_run(documents)
        before = grid.plan(base) if base else None
    return diff_plans(before, after, slos, base)


def _diff_files(
    previous: Path,
    nodes: list[Path],
    workloads: list[Path],
    probes: list[Path],
    time_limit_s: float,
    slos: dict[str, tuple[float, float]],
) -> PlanDiff:
    before = load_previous(previous)
    request = PlanRequest(nodes, workloads, probes, previous, time_limit_s=time_limit_s)
    with render.stderr.status("planning...") as status:
        after = run_plan(request, progress=lambda message: status.update(message)).plan
    return diff_plans(before, after, slos)


def _print_remote_error(error: RemoteError) -> None:
    if error.issues:
        render.print_issues(error.issues, title=error.message)
    else:
        render.stderr.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False)


# ------------------------------------------------------------------------------------ rendering


def _pair(before: float | None, after: float | None, digits: int) -> str:
    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    if before is not None and after is not None and round(before, digits) == round(after, digits):
        return shown(after)
    return f"{shown(before)} → {shown(after)}"


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _row(w: WorkloadDiff) -> list[str]:
    """workload, change, replicas, capacity (demand), TTFT (SLO), ITL (SLO), SLO met, $/h."""
    b, a = w.before, w.after
    replicas = _pair(b.replicas if b else None, a.replicas if a else None, 0)
    counts = f"+{len(w.added)} ~{len(w.moved)} -{len(w.removed)}"
    side = a or b
    demand = side.demand_rps if side else 0.0
    slo_met = _pair_text(_yes_no(b.slo_met) if b else None, _yes_no(a.slo_met) if a else None)
    return [
        w.name,
        w.change.value + (" (unplaced)" if a and a.unplaced else ""),
        f"{replicas} ({counts})",
        f"{_pair(b.capacity_rps if b else None, a.capacity_rps if a else None, 1)} ({demand:g})",
        _pair(b.ttft_ms if b else None, a.ttft_ms if a else None, 0) + _target(w.slo_ttft_ms),
        _pair(b.itl_ms if b else None, a.itl_ms if a else None, 1) + _target(w.slo_itl_ms),
        slo_met,
        _pair(b.cost_per_hour if b else None, a.cost_per_hour if a else None, 2),
    ]


def _pair_text(before: str | None, after: str | None) -> str:
    if before == after:
        return after or "-"
    return f"{before or '-'} → {after or '-'}"


def _target(value: float | None) -> str:
    return "" if value is None else f" ({value:g})"


COLUMNS = ["workload", "change", "replicas (+added ~moved -removed)", "capacity req/s (demand)",
           "TTFT ms (SLO)", "ITL ms (SLO)", "SLO met", "$/h"]  # fmt: skip


def headline(diff: PlanDiff) -> str:
    against = f"generation {diff.base_generation}" if diff.base_generation else "no plan yet"
    cost = f"${diff.cost_before:.2f}/h → ${diff.cost_after:.2f}/h ({_delta(diff)})"
    if diff.empty:
        return f"no change against {against}: {len(diff.workloads)} workloads as they are, {cost}"
    return (
        f"{len(diff.changes)} of {len(diff.workloads)} workloads change against {against}: {cost}"
    )


def _delta(diff: PlanDiff) -> str:
    ratio = diff.cost_delta_ratio
    percent = "" if ratio is None else f", {ratio:+.1%}"
    return f"{'+' if diff.cost_delta >= 0 else '-'}${abs(diff.cost_delta):.2f}{percent}"


def _details(w: WorkloadDiff) -> list[str]:
    lines = [f"+ {label}" for label in w.added]
    lines += [f"~ {move.source} → {move.target}" for move in w.moved]
    lines += [f"- {label}" for label in w.removed]
    if w.after and w.after.unplaced:
        lines += [f"unplaced: {reason}" for reason in w.after.unplaced]
    if w.change is Change.REMOVED:
        lines.append("removed: its replicas stop")
    return lines


def print_text(diff: PlanDiff, failures: list[str]) -> None:
    render.stdout.print(escape(headline(diff)), highlight=False)
    if not diff.empty:
        rows = [_row(w) for w in diff.changes]
        render.stdout.print(render.table("", COLUMNS, rows))
        for w in diff.changes:
            lines = _details(w)
            if lines:
                render.stdout.print(f"[bold]{escape(w.name)}[/]", highlight=False)
            for line in lines:
                render.stdout.print(f"  {escape(line)}", highlight=False)
    for failure in failures:
        render.stdout.print(f"[bold red]fails:[/] {escape(failure)}", highlight=False)


def markdown(diff: PlanDiff, failures: list[str]) -> str:
    """A pull-request comment: headline, a table of the changed workloads, replica details."""
    out = ["### gridplace diff", "", headline(diff)]
    if failures:
        out += ["", "**Fails:**", *[f"- {failure}" for failure in failures]]
    if not diff.empty:
        out += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(_md(cell) for cell in _row(w)) + " |" for w in diff.changes]
        details = [(w.name, _details(w)) for w in diff.changes]
        if any(lines for _, lines in details):
            out += ["", "<details><summary>Replicas and reasons</summary>", ""]
            for name, lines in details:
                # Code spans: a line opening with "+" or "-" would read as a nested list.
                code = ["- `" + line.replace("`", "'") + "`" for line in lines]
                out += [f"**{name}**", "", *code, ""]
            out.append("</details>")
    return "\n".join(out)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")
