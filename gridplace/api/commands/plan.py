"""``gridplace plan`` and ``gridplace explain``: specs in, a placement plan (or reasons) out."""

from __future__ import annotations

from collections import defaultdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape

from gridplace.api import render
from gridplace.api.wiring import PlanRequest, run_plan
from gridplace.planner.parts import RayMissing, require_ray
from gridplace.planner.planning import PlanResult, Strategy
from gridplace.planner.shards import MAX_SHARDS, SHARD_NODES, ShardCount
from gridplace.specs import PlacementPlan, Prediction, SpecError
from gridplace.specs.plan import WorkloadCoverage

EXIT_INVALID = 1
EXIT_UNPLACED = 3


class PlanFormat(StrEnum):
    TABLE = "table"
    YAML = "yaml"
    JSON = "json"


class ExplainFormat(StrEnum):
    TEXT = "text"
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
PreviousOption = Annotated[
    Path | None, typer.Option("--previous", help="The plan in force: keep what can stay.")
]
StrategyOption = Annotated[
    Strategy, typer.Option("--strategy", help="cpsat (default), greedy or capacity-only.")
]
TimeLimitOption = Annotated[
    float,
    typer.Option(
        "--time-limit",
        min=0.1,
        max=3600,
        help="Solver work limit in reference seconds: deterministic work (the same plan on any "
        "machine load), about a second each of an unloaded core of a 2-core machine.",
    ),
]
BudgetOption = Annotated[
    float | None, typer.Option("--budget", min=0, help="Maximum cost, USD per hour.")
]


def check_shards(text: str) -> str:
    """``--shards``: a count 1-MAX_SHARDS, or ``auto`` (a usage error otherwise)."""
    if text != "auto" and not (text.isdigit() and 1 <= int(text) <= MAX_SHARDS):
        raise typer.BadParameter(f"expected a count 1-{MAX_SHARDS} or 'auto', got {text!r}")
    return text


def shard_count_of(text: str) -> ShardCount:
    return "auto" if text == "auto" else int(text)


ShardsOption = Annotated[
    str,
    typer.Option(
        "--shards",
        callback=check_shards,
        help=f"Cut the grid into K shards planned apart (each workload on its shard's nodes, "
        f"then the demand left unmet on the other shards' leftover capacity), on --workers "
        f"processes or --ray-address; 'auto': one per ~{SHARD_NODES:,} nodes (a smaller grid "
        f"is planned whole). Not with --budget.",
    ),
]


def command(
    nodes: NodesOption,
    workloads: WorkloadsOption,
    probes: ProbesOption = None,
    previous: PreviousOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the plan YAML here.")
    ] = None,
    output_format: Annotated[PlanFormat, typer.Option("--format")] = PlanFormat.TABLE,
    strategy: StrategyOption = Strategy.CPSAT,
    time_limit: TimeLimitOption = 10.0,
    budget: BudgetOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Solver random seed.")] = 0,
    headroom: Annotated[
        float | None,
        typer.Option(
            "--headroom",
            min=0,
            max=10,
            help=(
                "Capacity booked above mean demand for every workload (0.5 = +50%). Default: "
                "what each workload's traffic.burstiness implies, +100% where it declares none."
            ),
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Local processes that solve the plan's independent parts (or its shards) at "
            "once (the same plan as one).",
        ),
    ] = 1,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Solve the independent parts on this Ray cluster (HOST:PORT, or 'local' for a "
            "one-machine Ray); needs gridplace[scale].",
        ),
    ] = None,
    shards: ShardsOption = "1",
) -> None:
    """Solve the placement and print (or write) a PlacementPlan."""
    try:
        require_ray(ray_address)
    except RayMissing as error:
        render.stderr.print(f"[bold red]error:[/] --ray-address {escape(str(error))}")
        raise typer.Exit(EXIT_INVALID) from None
    request = PlanRequest(
        nodes, workloads, probes or [], previous, strategy, time_limit, budget, seed, headroom,
        workers=workers, ray_address=ray_address, shards=shard_count_of(shards),
    )  # fmt: skip
    result = _plan_or_exit(request)
    plan = result.plan
    document = plan.to_yaml_dict()
    if output is not None:
        try:
            output.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        except OSError as error:
            render.stderr.print(f"[bold red]error:[/] cannot write {output}: {error.strerror}")
            raise typer.Exit(EXIT_INVALID) from None
    if output_format is PlanFormat.YAML:
        render.print_yaml([document])
    elif output_format is PlanFormat.JSON:
        render.print_json(document)
    else:
        print_plan_table(result)
    if plan.status is not None and plan.status.unplaced:
        raise typer.Exit(EXIT_UNPLACED)


def explain(
    nodes: NodesOption,
    workloads: WorkloadsOption,
    probes: ProbesOption = None,
    previous: PreviousOption = None,
    workload: Annotated[str | None, typer.Option("--workload", help="Only this workload.")] = None,
    time_limit: TimeLimitOption = 10.0,
    budget: BudgetOption = None,
    output_format: Annotated[
        ExplainFormat, typer.Option("--format", help="text, or json: reasons and fixes as data.")
    ] = ExplainFormat.TEXT,
) -> None:
    """Why each workload is (or is not) placed: per-node reasons with numbers, and fixes that
    were tried and place it."""
    from gridplace.api.solver_pool import explain as explanation
    from gridplace.planner.explain import compile_summary

    result = _plan_or_exit(
        PlanRequest(nodes, workloads, probes or [], previous, Strategy.CPSAT, time_limit, budget, 0)
    )
    assert result.plan.status is not None
    unplaced = {u.workload: u for u in result.plan.status.unplaced}
    coverage = {c.name: c for c in result.plan.status.workloads}
    names = [w.name for w in result.problem.workloads]
    if workload is not None and workload not in names:
        render.stderr.print(
            f"[bold red]error:[/] no workload {workload!r}; workloads: {', '.join(names)}"
        )
        raise typer.Exit(EXIT_INVALID)
    if output_format is ExplainFormat.JSON:
        render.print_json(
            [e for e in explanation(result) if workload is None or e["name"] == workload]
        )
    for demand in result.problem.workloads:
        if output_format is ExplainFormat.JSON or workload not in (None, demand.name):
            continue
        if demand.name in unplaced:
            render.stdout.print(f"[bold red]{demand.name}: not (fully) placed[/]")
            for reason in unplaced[demand.name].reasons:
                render.stdout.print(f"  - {escape(reason)}", highlight=False)
            for hint in unplaced[demand.name].hints:
                render.stdout.print(f"  [cyan]hint:[/] {escape(hint)}", highlight=False)
        else:
            c = coverage[demand.name]
            render.stdout.print(
                f"[bold green]{demand.name}: placed[/] {c.replicas} replicas, "
                f"{c.capacity_rps:.2f} req/s for {c.demand_rps:g} demanded",
                highlight=False,
            )
            reasons, _ = compile_summary(result.problem, demand.index)
            render.stdout.print(f"  - {escape(reasons[0])}", highlight=False)
    if unplaced and (workload is None or workload in unplaced):
        raise typer.Exit(EXIT_UNPLACED)


def _plan_or_exit(request: PlanRequest) -> PlanResult:
    try:
        with render.stderr.status("planning...") as status:
            return run_plan(request, lambda message: status.update(message), render.warn)
    except SpecError as error:
        render.print_issues(error.issues)
        raise typer.Exit(EXIT_INVALID) from None


def print_plan_table(result: PlanResult) -> None:
    """Per workload: replicas, precisions, nodes, predicted TTFT/ITL (expected at the demand's
    load, p50/p99, and at full booked load against the SLO; the worst replica of each), coverage,
    cost."""
    plan: PlacementPlan = result.plan
    assert plan.status is not None
    by_workload: dict[str, list[tuple[str, str]]] = defaultdict(list)
    predicted: dict[str, list[Prediction]] = defaultdict(list)
    for a in plan.spec.assignments:
        label = f"{a.node}:{','.join(map(str, a.gpus))}" + (
            f"(1/{a.gpu_share})" if a.gpu_share > 1 else ""
        )
        precision = a.precision.value + (f" tp{a.tensor_parallel}" if a.tensor_parallel > 1 else "")
        by_workload[a.workload].append((label, precision))
        if a.predicted is not None:
            predicted[a.workload].append(a.predicted)
    rows = []
    demands = {w.name: w for w in result.problem.workloads}
    for coverage in plan.status.workloads:
        placed = by_workload.get(coverage.name, [])
        demand = demands[coverage.name]
        nodes = sorted({p[0] for p in placed})
        precisions = sorted({p[1] for p in placed})
        ttft, itl = _latencies(predicted.get(coverage.name, []))
        rows.append(
            [
                coverage.name,
                str(coverage.replicas or 0),
                ", ".join(precisions) or "-",
                ", ".join(nodes[:4]) + (f" +{len(nodes) - 4}" if len(nodes) > 4 else ""),
                f"{ttft}/{demand.ttft_slo_ms:g}",
                f"{itl}/{demand.itl_slo_ms:g}",
                f"{coverage.capacity_rps:.1f} / {coverage.demand_rps:g}",
                _after_node_loss(coverage, demand.booked_rps),
                f"{coverage.cost_per_hour or 0:.2f}",
                "[green]yes[/]" if coverage.slo_met else "[red]no[/]",
            ]
        )
    solver = plan.status.solver
    # The wall time goes to stderr: stdout is the plan, the same for the same inputs.
    title = (
        f"{plan.metadata.name} (generation {plan.metadata.generation}): "
        f"{len(plan.spec.assignments)} replicas, ${plan.status.cost_per_hour or 0:.2f}/h, "
        f"{solver.status if solver else ''}"
    )
    columns = ["workload", "replicas", "precision", "nodes:gpus",
               "TTFT ms: demand\np50/p99 | full/SLO", "ITL ms: demand\nmean | full/SLO",
               "req/s cap / demand", "after node loss",
               "$/h", "SLO met"]  # fmt: skip
    render.stdout.print(render.table(title, columns, rows))
    for unplaced in plan.status.unplaced:
        render.stdout.print(f"[bold red]unplaced {unplaced.workload}[/]")
        for reason in unplaced.reasons:
            render.stdout.print(f"  - {escape(reason)}", highlight=False)
        for hint in unplaced.hints:
            render.stdout.print(f"  [cyan]hint:[/] {escape(hint)}", highlight=False)
    for warning in plan.status.warnings:
        render.stdout.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    for note in plan.status.notes:
        render.stdout.print(f"note: {escape(note)}", highlight=False)
    if solver is not None:
        render.stderr.print(f"solved in {solver.wall_seconds:.2f} s (wall clock)", highlight=False)
    print_shards(result)
    for released in result.problem.released:
        render.stderr.print(f"released: {escape(released)}", highlight=False)


def print_shards(result: PlanResult) -> None:
    """A sharded plan's shards (nodes, workloads, options, compile and solve CPU s, what each
    left unmet) and the pass over their leftover capacity, on stderr: times vary by run."""
    if not result.shards:
        return
    rows = [
        [str(number), str(s.nodes), str(s.workloads), str(s.options), f"{s.compile_cpu_s:.1f}",
         f"{s.solve_cpu_s:.1f}", f"{s.unmet_rps:.1f}"]
        for number, s in enumerate(result.shards)
    ]  # fmt: skip
    columns = ["shard", "nodes", "workloads", "options", "compile CPU s", "solve CPU s",
               "unmet req/s"]  # fmt: skip
    render.stderr.print(render.table("shards", columns, rows))
    found = result.reconciled
    if found is not None:
        render.stderr.print(
            f"reconcile: {found.short_workloads} workloads short ({found.left_out} left out), "
            f"{found.replicas} replicas added ({found.capacity_rps:.1f} req/s), unmet "
            f"{found.unmet_before_rps:.1f} -> {found.unmet_after_rps:.1f} booked req/s, "
            f"{found.cpu_s:.1f} CPU s",
            highlight=False,
        )


def _latencies(predicted: list[Prediction]) -> tuple[str, str]:
    """The worst replica's TTFT and ITL: expected at the demand's load (TTFT p50/p99) and at
    full booked load (what the SLO is checked against), as table cells without the SLO."""
    if not predicted:
        return "-", "-"
    full_ttft = max(p.ttft_ms for p in predicted)
    full_itl = max(p.itl_ms for p in predicted)
    at_demand = [p.at_demand for p in predicted if p.at_demand is not None]
    if len(at_demand) < len(predicted):
        return f"- | {full_ttft:.0f}", f"- | {full_itl:.1f}"
    p50 = max(d.ttft_p50_ms for d in at_demand)
    p99 = max(d.ttft_p99_ms for d in at_demand)
    itl = max(d.itl_ms for d in at_demand)
    return f"{p50:.0f}/{p99:.0f} | {full_ttft:.0f}", f"{itl:.1f} | {full_itl:.1f}"


def _after_node_loss(coverage: WorkloadCoverage, booked_rps: float) -> str:
    """Capacity left after the worst node loss (every node counted; an exempt one named), yellow
    when it no longer covers the booked demand (the failover rule's target)."""
    left = coverage.capacity_after_node_loss_rps
    if left is None:
        return "-"
    colour = "green" if left + 1e-6 >= booked_rps else "yellow"
    exempt = f" ({coverage.worst_node} exempt)" if coverage.worst_node_exempt else ""
    return f"[{colour}]{left:.1f}{escape(exempt)}[/]"
