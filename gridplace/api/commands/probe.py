"""``gridplace probe``: measure TCP round trips to peers and print a LatencyProbes document.

Exit codes: 0 the document was printed (unreachable peers are in it, with ``lost`` and
``error``); 1 a bad peers file or source name; 2 usage (typer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from gridplace.api import render
from gridplace.specs import SpecIssue
from gridplace.topology.errors import PeersFileError
from gridplace.topology.peers import Peer, load_peers
from gridplace.topology.prober import (
    PeerResult,
    ProbeSettings,
    default_source,
    run_probes,
    to_latency_probes,
)
from gridplace.topology.samples import ENDPOINT

EXIT_INVALID = 1


def command(
    peers: Annotated[
        Path,
        typer.Option(
            "--peers",
            help="Peers file: YAML (peers: [{name, address}]) or lines 'NAME HOST:PORT' or "
            "'HOST:PORT' (named after the host).",
        ),
    ],
    count: Annotated[int, typer.Option("--count", min=1, max=1000, help="Connects per peer.")] = 5,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, max=600, help="Seconds per connect.")
    ] = 2.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=4096, help="Peers probed at once.")
    ] = 32,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Endpoint name of this machine (default: host name)."),
    ] = None,
) -> None:
    """Measure TCP-connect RTT (and the kernel's smoothed RTT) to peers; print LatencyProbes."""
    try:
        peer_list = load_peers(peers)
    except PeersFileError as error:
        render.print_issues(error.issues, title="invalid peers file")
        raise typer.Exit(EXIT_INVALID) from None
    source_name = source if source is not None else default_source()
    problem = None
    if not ENDPOINT.match(source_name):
        problem = (
            f"source {source_name!r} is not an endpoint name (lowercase letters, digits, '.', "
            "'_', '-'; or region/<name>, cache/<name>); pass --source NAME"
        )
    elif any(peer.name == source_name for peer in peer_list):
        problem = f"peer {source_name!r} is the source itself; remove it or pass --source"
    if problem:
        render.print_issues([SpecIssue(problem)], title="invalid source")
        raise typer.Exit(EXIT_INVALID)
    settings = ProbeSettings(count=count, timeout_s=timeout, concurrency=concurrency)
    results = _probe_with_progress(peer_list, settings)
    document = to_latency_probes(results, source_name)
    render.print_yaml([document.to_yaml_dict()])
    unreachable = [r.peer.name for r in results if not r.reachable]
    summary = f"probed {len(results)} peer(s) from {source_name}: {len(unreachable)} unreachable"
    if unreachable:
        summary += f" ({', '.join(unreachable[:5])}{', ...' if len(unreachable) > 5 else ''})"
    render.stderr.print(summary, highlight=False)


def _probe_with_progress(peer_list: list[Peer], settings: ProbeSettings) -> list[PeerResult]:
    if not render.stderr.is_terminal:
        return run_probes(peer_list, settings)
    with Progress(console=render.stderr, transient=True) as progress:
        task = progress.add_task("probing", total=len(peer_list))
        return run_probes(peer_list, settings, lambda _: progress.advance(task))
