#!/usr/bin/env python3
"""How long ``gridplace diff --api`` takes in CI: a real ``gridplace serve`` on 127.0.0.1 with a
grid registered and its workloads planned, then the diff of the same workloads timed end to end
as a CI job runs it (a fresh ``gridplace`` process: start-up, the server's dry-run solve, the
base plan's read, the comparison), with a viewer token.

Run from the repository root::

    .venv/bin/python bench/ci_diff.py                       # the example grid and 1000x100
    .venv/bin/python bench/ci_diff.py --sizes example --runs 5
    .venv/bin/python bench/ci_diff.py --data /path/to/shared/data   # generated grids' offers

Grids: ``example`` is the shipped one (``examples/``: 104 nodes, 9 workloads, its probes);
``NxW`` is ``bench/gridgen.py``'s generated grid of N nodes and W workloads at moderate
utilization (the solver_scale bench's; needs ``../shared/data`` or ``--data``), without probes.
The server keeps its defaults (10 s solver limit, solves in its worker process, SQLite).
Printed per grid: the median over ``--runs`` of the diff, the submission that stored the plan
(the baseline: the same solve, stored), their ratio, and how many workloads each diff showed
changed. Client, server and solver share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gridgen import OFFERS_CSV, generate_nodes, generate_workloads, read_offers

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
GRIDPLACE = Path(sys.executable).parent / "gridplace"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(directory: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPLACE_")}
    env |= {
        "GRIDPLACE_ADMIN_TOKEN": ADMIN_TOKEN,
        "GRIDPLACE_DATABASE_URL": f"sqlite:///{directory / 'grid.db'}",
        "GRIDPLACE_REPLAN_INTERVAL_S": "0",
    }
    with (directory / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [str(GRIDPLACE), "serve", "--port", str(port), "--log-level", "warning"],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    message = f"the server did not start; see {directory / 'serve.log'}"
                    raise SystemExit(message) from None
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def write_grid(size: str, directory: Path, offers_csv: Path) -> tuple[Path, Path | None, Path]:
    """(nodes file, probes file or None, workloads directory) of a grid."""
    if size == "example":
        return (
            EXAMPLES / "grid" / "nodes.yaml",
            EXAMPLES / "probes" / "probes.yaml",
            EXAMPLES / "workloads",
        )
    nodes_n, workloads_n = (int(part) for part in size.split("x"))
    nodes = generate_nodes(nodes_n, seed=nodes_n, offers=read_offers(offers_csv))
    regions = sorted({n.spec.region for n in nodes})
    workloads = generate_workloads(workloads_n, regions, seed=workloads_n, rps_scale=0.5)
    nodes_file = directory / "nodes.yaml"
    nodes_file.write_text(yaml.safe_dump_all([n.to_yaml_dict() for n in nodes], sort_keys=False))
    workloads_dir = directory / "workloads"
    workloads_dir.mkdir()
    (workloads_dir / "workloads.yaml").write_text(
        yaml.safe_dump_all([w.to_yaml_dict() for w in workloads], sort_keys=False)
    )
    return nodes_file, None, workloads_dir


def bench(size: str, runs: int, offers_csv: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="gridplace-ci-diff-") as tmp:
        directory = Path(tmp)
        nodes, probes, workloads = write_grid(size, directory, offers_csv)
        body = b"".join(p.read_bytes() for p in sorted(workloads.glob("*.yaml")))
        with served(directory) as url:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            yaml_type = headers | {"Content-Type": "application/yaml"}
            with httpx.Client(base_url=url, timeout=600) as client:
                for path, file in (("/v1/nodes", nodes), ("/v1/probes", probes)):
                    if file is not None:
                        client.post(path, content=file.read_bytes(), headers=yaml_type)
                started = time.perf_counter()
                stored = client.post("/v1/plans", content=body, headers=yaml_type)
                submit_s = time.perf_counter() - started
                stored.raise_for_status()
                viewer = client.post("/v1/admin/viewers/bench/tokens", headers=headers)
                token = viewer.json()["token"]
            times: list[float] = []
            changed: list[int] = []
            command = [str(GRIDPLACE), "diff", "--api", url, "-w", str(workloads), "--format"]
            for _ in range(runs):
                started = time.perf_counter()
                done = subprocess.run(
                    [*command, "json"],
                    env=os.environ | {"GRIDPLACE_TOKEN": token},
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                times.append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"diff failed ({done.returncode}): {done.stderr}")
                changed.append(len(json.loads(done.stdout)["workloads"]))
        plan = stored.json()
        diff_s = statistics.median(times)
        print(
            f"{size:>10}: {len(plan['spec']['assignments'])} replicas, "
            f"{len(plan['status']['unplaced'])} unplaced; diff median {diff_s:.2f} s over {runs} "
            f"runs (min {min(times):.2f}, max {max(times):.2f}); "
            f"submit (baseline) {submit_s:.2f} s; diff/submit {diff_s / submit_s:.2f}; "
            f"workloads changed per run: {changed}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="example,1000x100")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, help="the shared data folder (default ../shared/data)")
    args = parser.parse_args()
    offers = args.data / "offers" / OFFERS_CSV.name if args.data else OFFERS_CSV
    print(f"command: {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    for size in args.sizes.split(","):
        bench(size.strip(), args.runs, offers)


if __name__ == "__main__":
    main()
