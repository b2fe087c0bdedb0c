"""``gridplace calibration --api URL``: the corrections the server learned from the engines.

Reading it: each row is a factor on the GPU part of the performance model's step time (the step
minus the engine's host overhead), observed / predicted at the operating points the engines
reported (1.25: that part takes 25% longer than the model says). The
GPU-type rows (GPU, model, precision, engine) are what the planner books; node rows are how far
a node departs from its type. ``weight`` is the evidence behind a factor in full windows: with
little weight a factor stays near 1 (shrinkage), with many it is the observed ratio.

Exit codes: 0 shown; 1 the server refused or cannot be reached; 2 usage.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from gridplace.api import render

EXIT_FAILED = 1
TIMEOUT_S = 30.0


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def command(
    api: Annotated[str, typer.Option("--api", help="The server, e.g. http://127.0.0.1:8700.")],
    token: Annotated[
        str, typer.Option("--token", envvar="GRIDPLACE_TOKEN", help="The admin token.")
    ],
    output_format: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.TABLE,
) -> None:
    """Show the learned step-time corrections per GPU type and per node."""
    client = make_client(api)
    try:
        response = client.get("/v1/calibration", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        render.stderr.print(f"[bold red]error:[/] cannot reach {escape(api)}: {escape(str(error))}")
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        client.close()
    if response.status_code != 200:
        render.stderr.print(
            f"[bold red]error:[/] {response.status_code}: {escape(_message(response))}",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED)
    data = response.json()
    if output_format is OutputFormat.JSON:
        render.print_json(data)
        return
    title = f"calibration {data['id']} ({data['windows']} windows, {data['ignored']} ignored)"
    columns = ["node", "GPU", "model", "precision", "engine", "decode x", "prefill x",
               "weight d/p"]  # fmt: skip
    rows = [_row(r) for r in [*data["gpuTypes"], *data["nodes"]]]
    render.stdout.print(render.table(title, columns, rows))


def make_client(api: str) -> httpx.Client:
    """The HTTP client (a seam: tests hand in one bound to an app)."""
    return httpx.Client(base_url=api.rstrip("/"), timeout=TIMEOUT_S)


def _row(row: dict[str, Any]) -> list[str]:
    return [
        row.get("node", "(type)"), row["gpu"], row["model"], row["precision"], row["engine"],
        f"{row['decodeFactor']:.3f}", f"{row['prefillFactor']:.3f}",
        f"{row['decodeWeight']:.0f} / {row['prefillWeight']:.0f}",
    ]  # fmt: skip


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:200]
