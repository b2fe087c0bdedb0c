#!/usr/bin/env python3
"""Throughput of the agents' two hot routes under ``wrk``, beside a bare FastAPI app.

Run from the repository root (needs ``wrk``, Debian's package)::

    .venv/bin/python bench/api_wrk.py --agents 2000 --duration 10

For each setup — gridplace on SQLite (1 process) and on PostgreSQL (``--workers 2``; the URL from
``GRIDPLACE_TEST_POSTGRES_URL``, else a throwaway cluster as in ``api_load.py``) — a real
``gridplace serve`` gets ``--agents`` nodes (the example grid's nodes, cloned under new names past
104), a token each and a first plan. ``wrk`` (1 thread, ``--connections`` keep-alive connections,
a separate process) then sends, for ``--duration`` seconds each: telemetry posts (with
``Prefer: return=minimal``, as the agent sends them, each node's registered throttle ratio so
that the periodic change check finds nothing to replan; ``--full`` without the preference),
assignment pulls with the latest ETag seen (304s, as agents on a 15 s schedule mostly get), and
the two mixed while a plan is submitted; every request rotates to the next node's own token (a
Lua script). The bare app (``bare_app.py``: telemetry inserted into SQLite, a small JSON answer)
runs with the same process count and the same wrk scripts in the same run: the ratio is the
figure that survives a noisy machine. Printed: requests/s, p50/p99 (wrk's), non-2xx/3xx answers,
wrk's own CPU seconds per wall second and the load average after each round. Rate limits are
lifted (wrk sends as fast as the server answers). Loopback only; client and server share the
machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import (  # a sibling script, not a package
    ADMIN_TOKEN,
    EXAMPLES,
    bare,
    nodes_for,
    postgres,
    server,
    setup,
)

LUA = """
local names = {%(names)s}
local tokens = {%(tokens)s}
local throttles = {%(throttles)s}
local kind = "%(kind)s"
local minimal = %(minimal)s
local etag = '%(etag)s'
local i = 0
request = function()
  i = i + 1
  local k = (i %% #names) + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[k]}
  local pull = kind == "assignments" or (kind == "mixed" and i %% 2 == 0)
  if pull then
    headers["If-None-Match"] = etag
    return wrk.format("GET", "/v1/nodes/" .. names[k] .. "/assignments", headers, nil)
  end
  headers["Content-Type"] = "application/json"
  if minimal then headers["Prefer"] = "return=minimal" end
  local body = '{"healthy": true, "thermal": {"throttleRatio": ' .. throttles[k] .. '}}'
  return wrk.format("POST", "/v1/nodes/" .. names[k] .. "/telemetry", headers, body)
end
local shown = 0
response = function(status, headers, body)
  local tag = headers["etag"] or headers["ETag"]
  if status == 200 and tag then etag = tag end
  if status >= 400 and shown < 5 then
    shown = shown + 1
    io.write("answer " .. status .. " " .. string.sub(body or "", 1, 300) .. "\\n")
  end
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
WARM_ROUNDS = 12


def wrk(url: str, script: Path, duration_s: float, connections: int) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration_s:g}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    ).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(found.group(1)) * UNITS[found.group(2)] if found else float("nan")

    for line in re.findall(r"^answer .*$", out, re.M):  # the first few errors, as wrk saw them
        print(f"  {line}", file=sys.stderr)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(rate.group(1)) if rate else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "bad": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 0.0
        if errors is None
        else float(sum(map(int, re.findall(r"\d+", errors.group(1))))),
        "wrk_cpu": cpu / wall,
        "load": os.getloadavg()[0],  # the machine is shared: say how busy it was
    }


def script(
    workdir: Path,
    kind: str,
    nodes: list[dict[str, Any]],
    tokens: list[str],
    etag: str,
    minimal: bool,
) -> Path:
    """wrk's Lua for ``kind``: each node's requests with its own token; heartbeats report the
    node's registered throttle ratio (a steady grid: no change for the periodic check to act
    on), and pulls send the latest ETag seen (as agents do after a new plan)."""
    path = workdir / f"{kind}.lua"
    names = [node["metadata"]["name"] for node in nodes]
    throttles = [
        float(((node.get("status") or {}).get("thermal") or {}).get("throttleRatio", 0.0))
        for node in nodes
    ]
    path.write_text(
        LUA
        % {
            "names": ",".join(json.dumps(n) for n in names),
            "tokens": ",".join(json.dumps(t) for t in tokens),
            "throttles": ",".join(f"{t:g}" for t in throttles),
            "kind": kind,
            "etag": etag,
            "minimal": "true" if minimal else "false",
        }
    )
    return path


def submit_plan_soon(url: str, delay_s: float) -> threading.Thread:
    def submit() -> None:
        time.sleep(delay_s)
        httpx.post(
            f"{url}/v1/plans",
            content=(EXAMPLES / "workloads" / "workloads.yaml").read_text(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/yaml"},
            params={"timeLimitSeconds": 2},
            timeout=120,
        )

    thread = threading.Thread(target=submit)
    thread.start()
    return thread


def measure(
    url: str,
    workdir: Path,
    nodes: list[dict[str, Any]],
    tokens: list[str],
    args: argparse.Namespace,
    plans: bool,
) -> dict[str, dict[str, float]]:
    etag = httpx.get(
        f"{url}/v1/nodes/{nodes[0]['metadata']['name']}/assignments",
        headers={"Authorization": f"Bearer {tokens[0]}"},
    ).headers.get("ETag", '"1"')
    # Every worker process verifies each token once (a database read): not measured.
    # On a loaded machine that takes longer than any fixed warm-up, so warm until the rate
    # stops rising (two rounds within 10% of each other), at most WARM_ROUNDS rounds.
    warm = script(workdir, "assignments", nodes, tokens, etag, args.minimal)
    rates = [wrk(url, warm, args.warmup, args.connections)["rps"]]
    while len(rates) < WARM_ROUNDS and (len(rates) < 2 or rates[-1] > 1.1 * rates[-2]):
        rates.append(wrk(url, warm, args.warmup, args.connections)["rps"])
    print(f"  warm-up: {len(rates)} rounds of {args.warmup:g} s, req/s {rates[-1]:.0f}")
    results = {}
    for kind in ("telemetry", "assignments", "mixed"):
        thread = submit_plan_soon(url, args.duration / 3) if plans and kind == "mixed" else None
        started = time.time()
        results[kind] = wrk(
            url,
            script(workdir, kind, nodes, tokens, etag, args.minimal),
            args.duration,
            args.connections,
        )
        if thread is not None:
            thread.join()
        if args.stalls is not None:
            print(f"  {kind}: {stall_summary(args.stalls, started, time.time())}")
    return results


STALL = re.compile(r"^== (stall|gc generation (\d):) ([\d.]+) ms at ([\d.]+)", re.M)


def stall_summary(directory: Path, start: float, end: float) -> str:
    """The stalls and long collections ``bench/stall_watch`` logged between ``start`` and
    ``end`` (every server process of the round together)."""
    stalls: list[float] = []
    full: list[float] = []
    for path in directory.glob("stalls-*.txt"):
        for kind, generation, ms, at in STALL.findall(path.read_text()):
            if start <= float(at) <= end:
                (stalls if kind == "stall" else full if generation == "2" else []).append(float(ms))
    return (
        f"{len(stalls)} loop stalls over 20 ms ({sum(stalls):.0f} ms in all, longest "
        f"{max(stalls, default=0):.0f}); {len(full)} full collections over 20 ms "
        f"({sum(full):.0f} ms); stacks in {directory}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="Seconds of one warm-up round (default: 0.5 ms per agent and process, at least 5 s); "
        "rounds repeat until the rate stops rising.",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--stalls",
        type=Path,
        default=None,
        help="Log every event-loop callback over 20 ms in the servers (gridplace's and the bare "
        "app's), with the stacks of all their threads meanwhile, to DIR/stalls-<pid>.txt "
        "(bench/stall_watch).",
    )
    parser.add_argument(
        "--full",
        dest="minimal",
        action="store_false",
        help="Telemetry without 'Prefer: return=minimal' (the node read back, 200); by default "
        "it is sent as the agent sends it (204, buffered and written in batches).",
    )
    args = parser.parse_args()
    if args.warmup is None:  # each process reads each token once: not measured
        args.warmup = max(5.0, 0.0005 * args.agents * 2)
    if args.stalls is not None:  # inherited by every server process started below
        args.stalls.mkdir(parents=True, exist_ok=True)
        os.environ["STALL_WATCH_DIR"] = str(args.stalls.resolve())
        watch = str(Path(__file__).resolve().parent / "stall_watch")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (watch, os.environ.get("PYTHONPATH")) if p
        )
    nodes = nodes_for(args.agents)
    print(
        f"# .venv/bin/python bench/api_wrk.py --agents {args.agents} --duration {args.duration:g}"
        f" --connections {args.connections}{' --full' * (not args.minimal)}"
        f"  (wrk -t1, a separate process); load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="gridplace-wrk-") as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            workers = 1 if backend == "sqlite" else 2
            with contextlib.ExitStack() as stack:
                if backend == "sqlite":
                    database: str | None = f"sqlite:///{workdir / 'bench.db'}"
                else:
                    database = stack.enter_context(postgres(workdir))
                    if database is None:
                        print("postgresql: skipped (no GRIDPLACE_TEST_POSTGRES_URL, no initdb)")
                        continue
                assert database is not None  # (skipped above)
                url = stack.enter_context(server(database, workdir, True, workers)).url
                tokens = asyncio.run(setup(url, nodes, 3.0))
                mine = measure(url, workdir, nodes, tokens, args, plans=True)
            with bare(workdir, workers) as served:
                base = measure(served.url, workdir, nodes, tokens, args, plans=False)
            report(f"{backend}, {workers} process{'es' * (workers > 1)}", mine, base)
    return 0


def report(
    title: str, mine: dict[str, dict[str, float]], base: dict[str, dict[str, float]]
) -> None:
    print(f"\n{title}")
    header = ("route", "req/s", "p50 ms", "p99 ms", "non-2xx/3xx", "wrk cpu", "load")
    print("{:<12} {:>8} {:>7} {:>7} {:>11} {:>7} {:>5} |".format(*header), end=" ")
    print("bare req/s bare p99  load  ratio")
    for kind, m in mine.items():
        b = base[kind]
        ratio = m["rps"] / b["rps"] if b["rps"] else float("nan")
        bad = m["bad"] + m["socket_errors"]
        print(
            f"{kind:<12} {m['rps']:>8.0f} {m['p50_ms']:>7.1f} {m['p99_ms']:>7.1f} {bad:>11.0f} "
            f"{m['wrk_cpu']:>7.2f} {m['load']:>5.1f} | {b['rps']:>10.0f} {b['p99_ms']:>8.1f} "
            f"{b['load']:>5.1f} {ratio:>6.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
