"""Helix's three LLaMA-2-70B clusters, planned by ``gridplace.planner.pipeline`` and evaluated
under Helix's own throughput model, beside Helix's Gurobi objectives and the Petals and Swarm
layouts shipped with Helix.

Reproduce (at most 60 s per instance on 2 cores)::

    .venv/bin/python bench/helix.py                      # a table
    .venv/bin/python bench/helix.py --format json --layout-out /tmp/helix-layouts

How the Helix data is imported (``--data``, default ``../shared/data/helix``, never copied):

- cluster INI: node GPU types and every link's bandwidth; regions are the groups of nodes joined
  by links of >= 100 Mbps (the 3-region instance's cross links are ~12.5 Mbps);
- per-layer profiles (``{prompt,decode}_bs2time.csv``) and the per-type constants transcribed in
  ``derived/`` (max layers per node, KV-cache entries per layer count, the typical-layer and
  initial-performance dictionaries, the dataset constants) are turned into a capacity table per
  GPU type — tokens/s when a node holds k layers — by re-deriving Helix's "typical token
  throughput" (its ``llama70b_typical_statistics`` / ``llama70b_workload_ratio`` fixed point, 10
  iterations, linear interpolation of the profiles), capped by the NIC: min(in, out) over the
  activation size. They are not turned into gridplace ``PerformanceProfile``s: Helix's figure
  is a batch-mix throughput per layer count, not a per-step time;
- link capacity: bandwidth over the activation size between nodes, over the token size to and
  from the source and sink (Helix divides the INI's bit rate by bytes; kept as is, to compare).

The throughput of a layout is the max flow of ``gridplace.planner.pipeline_flow`` with partial
inference allowed, as Helix's MILP does; the shipped Helix MILP layouts are evaluated the same
way, which checks this re-derivation against the Gurobi objectives.
"""

from __future__ import annotations

import argparse
import configparser
import csv
import io
import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gridplace.planner.pipeline import NodeClass, SplitProblem, solve_split, swap_within_classes
from gridplace.planner.pipeline_flow import Endpoint, PlacedNode, served_tokens_per_s

MODEL = "llama2_70b"
INSTANCES = {
    "single_cluster": "artifact_evaluation/single_cluster/config/cluster24.ini",
    "distributed_clusters": "artifact_evaluation/distributed_clusters/config/3cluster24.ini",
    "high_heterogeneity": "artifact_evaluation/high_heterogeneity/config/cluster42.ini",
}
BASELINES = ("ilp", "petals", "swarm")
UNITS = {"kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "GB": 1e9, "MB": 1e6, "KB": 1e3, "MilliSec": 1e-3}
FAST_LINK_BPS = 100e6  # links at least this fast join one region
MAX_FILE_BYTES = 1 << 20  # every Helix file read is far smaller


@dataclass(frozen=True)
class Cluster:
    types: dict[int, str]  # node -> GPU type
    links: dict[tuple[Endpoint, Endpoint], float]  # bits/s as in the INI
    nic_bps: dict[str, float]  # GPU type -> min(inbound, outbound)


@dataclass(frozen=True)
class Helix:
    num_layers: int
    token_bytes: float
    activation_bytes: float
    capacity: dict[str, tuple[float, ...]]  # GPU type -> tokens/s at k layers, [k - 1]


def _quantity(text: str) -> float:
    """'12.5 * mbps' -> 12.5e6; a bare number as is."""
    match = re.fullmatch(r"\s*(-?[0-9.]+)\s*(?:\*\s*([A-Za-z]+))?\s*", text)
    if match is None or (match.group(2) and match.group(2) not in UNITS):
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * (UNITS[match.group(2)] if match.group(2) else 1.0)


def _text(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return path.read_text()


def _ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read_string(_text(path), source=str(path))
    return parser


def load_cluster(data: Path, cluster_ini: str) -> Cluster:
    ini = _ini(data / cluster_ini)
    total = int(ini["NodeNames"]["total_compute_nodes"])
    types = {i: ini[f"ComputeNode-{i}"]["type"] for i in range(total)}
    links: dict[tuple[Endpoint, Endpoint], float] = {}
    for section in ini.sections():
        if section.startswith("Link-"):
            _, a, b = section.split("-")
            ends = [e if e in ("source", "sink") else int(e) for e in (a, b)]
            links[ends[0], ends[1]] = _quantity(ini[section]["bandwidth"])
    machines = _ini(data / Path(cluster_ini).parent / "machine_profiles.ini")
    nic = {
        t: min(
            _quantity(machines[t]["inbound_nic_speed"]),
            _quantity(machines[t]["outbound_nic_speed"]),
        )
        for t in set(types.values())
    }
    return Cluster(types, links, nic)


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_text(path))))


def _profile(path: Path) -> dict[int, float]:
    """batch tokens -> seconds for one layer (the CSV is in ms, no header)."""
    rows = csv.reader(io.StringIO(_text(path)))
    return {int(row[0]): float(row[1]) * 1e-3 for row in rows if row}


def _interpolate(profile: dict[int, float], x: int) -> float:
    left = max(p for p in profile if p <= x)
    right = min(p for p in profile if p >= x)
    if left == right:
        return profile[left]
    return profile[left] + (profile[right] - profile[left]) * (x - left) / (right - left)


def load_helix(data: Path, counts: dict[str, int]) -> Helix:
    """Capacity tables for the GPU types in ``counts`` (Helix's estimates depend on the mix)."""
    derived = data / "derived"
    constants = {r["name"]: float(r["value"]) for r in _csv(derived / "helix_global_constants.csv")}
    model = next(r for r in _csv(derived / "helix_model_constants.csv") if r["model"] == MODEL)
    layers = int(model["total_layers"])
    estimates = {
        r["machine"]: r
        for r in _csv(derived / "helix_model_machine_initial_estimates.csv")
        if r["model"] == MODEL
    }
    kv: dict[str, dict[int, int]] = defaultdict(dict)
    for r in _csv(derived / "helix_machine_layer_constants.csv"):
        if r["model"] == MODEL:
            kv[r["machine"]][int(r["num_layers_on_node"])] = int(r["kv_cache_capacity_entries"])
    typical = {t: int(estimates[t]["typical_layers_default"]) for t in counts}
    if sum(counts[t] * typical[t] for t in counts) < layers * 1.2:
        typical = {
            t: int(estimates[t]["typical_layers_if_capacity_lt_1.2x_total_layers"]) for t in counts
        }
    profiles = {
        t: {
            ph: _profile(data / f"simulator/model_manager/{MODEL}/{t.lower()}/{ph}_bs2time.csv")
            for ph in ("prompt", "decode")
        }
        for t in counts
    }
    perf = {t: float(estimates[t]["normalized_perf_initial"]) for t in counts}

    def throughput(t: str, k: int, perf: dict[str, float]) -> float:
        layer_time = {u: 1 / p for u, p in perf.items()}
        mean = sum(counts[u] * typical[u] * layer_time[u] for u in counts) / sum(
            counts[u] * typical[u] for u in counts
        )
        batch_time = k * layer_time[t]
        ratio = batch_time / ((layers - k) * mean + batch_time)
        return _typical_throughput(constants, profiles[t], kv[t][k], k, ratio)

    for _ in range(10):  # Helix iterates its performance estimate ten times
        perf = {t: throughput(t, typical[t], perf) * typical[t] for t in counts}
    capacity = {t: tuple(throughput(t, k, perf) for k in sorted(kv[t])) for t in counts}
    return Helix(
        layers, float(model["token_size_bytes"]), float(model["activation_size_bytes"]), capacity
    )


def _typical_throughput(
    constants: dict[str, float],
    profile: dict[str, dict[int, float]],
    kv_entries: int,
    k: int,
    ratio: float,
) -> float:
    """Helix's tokens/s of a node with ``k`` layers at its typical prompt/decode batch mix."""
    avg_in, avg_out = constants["AVG_INPUT_LEN"], constants["AVG_OUTPUT_LEN"]
    available = int(constants["KV_CACHE_HWM"] * kv_entries / k)
    requests = available / (avg_in + avg_out) * ratio / avg_out
    prompt_tokens = round(requests * avg_in)
    decode_tokens = round(available / (avg_in + avg_out) * ratio)
    if requests > 1:
        requests, prompt_tokens, decode_tokens = 1, int(avg_in), int(avg_out)
    if requests >= 1:
        step = _interpolate(profile["prompt"], prompt_tokens) + _interpolate(
            profile["decode"], decode_tokens
        )
        return (prompt_tokens + decode_tokens) / (k * step)
    scale = 1 / requests
    step = (
        _interpolate(profile["prompt"], int(prompt_tokens * scale))
        + _interpolate(profile["decode"], decode_tokens) * scale
    )
    return scale * (prompt_tokens + decode_tokens) / (k * step)


def node_capacity(helix: Helix, cluster: Cluster, gpu: str) -> tuple[float, ...]:
    """tokens/s at k layers, capped by the node's NIC (Helix: min(in, out) / activation)."""
    nic = cluster.nic_bps[gpu] / helix.activation_bytes
    return tuple(min(c, nic) for c in helix.capacity[gpu])


def link_tokens_per_s(helix: Helix, cluster: Cluster) -> dict[tuple[Endpoint, Endpoint], float]:
    return {
        (a, b): bps
        / (helix.token_bytes if "source" in (a, b) or "sink" in (a, b) else helix.activation_bytes)
        for (a, b), bps in cluster.links.items()
    }


def regions(cluster: Cluster) -> dict[int, str]:
    """Nodes joined by fast links share a region (union-find over the node-to-node links)."""
    parent = {n: n for n in cluster.types}

    def root(n: int) -> int:
        while parent[n] != n:
            n = parent[n]
        return n

    for (a, b), bps in cluster.links.items():
        if isinstance(a, int) and isinstance(b, int) and bps >= FAST_LINK_BPS:
            parent[root(a)] = root(b)
    names = {r: f"r{i}" for i, r in enumerate(sorted({root(n) for n in cluster.types}))}
    return {n: names[root(n)] for n in cluster.types}


def split_problem(helix: Helix, cluster: Cluster) -> SplitProblem:
    region = regions(cluster)
    members: dict[tuple[str, str], list[int]] = defaultdict(list)
    for node, gpu in sorted(cluster.types.items()):
        members[region[node], gpu].append(node)
    classes = tuple(
        NodeClass(f"{r}/{gpu}", r, tuple(nodes), node_capacity(helix, cluster, gpu))
        for (r, gpu), nodes in sorted(members.items())
    )
    pairs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (a, b), tokens in link_tokens_per_s(helix, cluster).items():
        if isinstance(a, int) and isinstance(b, int):
            first, second = sorted((region[a], region[b]))
            pairs[first, second].append(tokens)
    # the mean link of a region pair: the exact evaluation afterwards uses every link's own figure
    return SplitProblem(helix.num_layers, classes, {k: sum(v) / len(v) for k, v in pairs.items()})


def evaluate(helix: Helix, cluster: Cluster, layers: dict[int, tuple[int, int]]) -> float:
    nodes = {}
    for node, (first, last) in layers.items():
        table = node_capacity(helix, cluster, cluster.types[node])
        held = last - first
        # a layout holding more layers than Helix allows on a node gets no capacity there
        nodes[node] = PlacedNode(first, last, table[held - 1] if held <= len(table) else 0.0)
    return served_tokens_per_s(
        helix.num_layers, nodes, link_tokens_per_s(helix, cluster), partial=True
    )


def shipped_layout(data: Path, cluster_ini: str, kind: str) -> dict[int, tuple[int, int]]:
    """A Helix/Petals/Swarm layout INI: compute_node_<k> = [layers]; node = k - offset."""
    path = data / Path(cluster_ini).parent.parent / "layout_llama70b" / kind / f"{kind}_sol.ini"
    ini = _ini(path)
    offset = int(ini["Settings"]["offset"])
    layout = {}
    for key, value in ini["Solution"].items():
        held = [int(x) for x in re.findall(r"\d+", value)]
        if held:
            layout[int(key.removeprefix("compute_node_")) - offset] = (min(held), max(held) + 1)
    return layout


def gurobi_objectives(data: Path) -> dict[str, float]:
    rows = _csv(data / "derived/helix_gurobi_objectives.csv")
    return {r["experiment"]: float(r["objective_tokens_per_s"]) for r in rows}


@dataclass(frozen=True)
class Row:
    instance: str
    tokens_per_s: float  # our layout, Helix's max flow
    gurobi_tokens_per_s: float
    seconds: float
    model_tokens_per_s: float  # the split model's own objective
    bound_tokens_per_s: float
    status: str
    baselines: dict[str, float]  # shipped layouts (Helix MILP, Petals, Swarm), Helix's max flow
    layout: list[dict[str, object]]


def run_instance(data: Path, name: str, time_limit_s: float, workers: int) -> Row:
    cluster = load_cluster(data, INSTANCES[name])
    counts: dict[str, int] = defaultdict(int)
    for gpu in cluster.types.values():
        counts[gpu] += 1
    helix = load_helix(data, dict(counts))
    started = time.perf_counter()
    problem = split_problem(helix, cluster)
    result = solve_split(problem, time_limit_s=time_limit_s, workers=workers)
    layers = swap_within_classes(problem, result.layers, lambda t: evaluate(helix, cluster, t))
    seconds = time.perf_counter() - started
    baselines = {
        kind: round(evaluate(helix, cluster, shipped_layout(data, INSTANCES[name], kind)), 2)
        for kind in BASELINES
    }
    layout: list[dict[str, object]] = []
    for node in sorted(cluster.types):
        first, last = layers.get(node, (None, None))
        layout.append({"node": node, "gpu": cluster.types[node], "first": first, "last": last})
    return Row(
        instance=name,
        tokens_per_s=round(evaluate(helix, cluster, layers), 2),
        gurobi_tokens_per_s=gurobi_objectives(data)[name],
        seconds=round(seconds, 1),
        model_tokens_per_s=result.tokens_per_s,
        bound_tokens_per_s=round(result.bound_tokens_per_s, 2),
        status=result.status,
        baselines=baselines,
        layout=layout,
    )


def _print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"{'instance':22} {'ours tok/s':>10} {'Gurobi':>8} {'ratio':>6} {'s':>5} {'bound':>8} "
        f"{'MILP layout':>11} {'Petals':>8} {'Swarm':>8}"
    )
    for row in rows:
        base = row.baselines
        print(
            f"{row.instance:22} {row.tokens_per_s:10.2f} {row.gurobi_tokens_per_s:8.2f} "
            f"{row.tokens_per_s / row.gurobi_tokens_per_s:6.3f} {row.seconds:5.1f} "
            f"{row.bound_tokens_per_s:8.1f} {base['ilp']:11.2f} {base['petals']:8.2f} "
            f"{base['swarm']:8.2f}"
        )
    print(
        "reproduce: .venv/bin/python bench/helix.py "
        f"--time-limit-s {args.time_limit_s:g} --workers {args.workers}"
    )


def _default_data() -> Path:
    """The nearest ``shared/data/helix`` above this checkout (``../shared`` of the main tree)."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "shared/data/helix").is_dir():
            return folder / "shared/data/helix"
    return Path("../shared/data/helix")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--instance", choices=sorted(INSTANCES), action="append")
    parser.add_argument("--time-limit-s", type=float, default=55.0)  # + build <= 60 s
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--layout-out", type=Path)
    args = parser.parse_args(argv)
    if not (args.data / "derived").is_dir():
        print(f"helix: no Helix data at {args.data} (--data)", file=sys.stderr)
        return 2
    try:
        rows = [
            run_instance(args.data, n, args.time_limit_s, args.workers)
            for n in args.instance or INSTANCES
        ]
    except (OSError, KeyError, ValueError, configparser.Error) as error:
        print(f"helix: cannot read the Helix data under {args.data}: {error!r}", file=sys.stderr)
        return 2
    if args.layout_out:
        args.layout_out.mkdir(parents=True, exist_ok=True)
        for row in rows:
            text = json.dumps(row.layout, indent=1) + "\n"
            (args.layout_out / f"{row.instance}.json").write_text(text)
    if args.format == "json":
        out = [
            {
                "instance": r.instance,
                "tokensPerS": r.tokens_per_s,
                "gurobiTokensPerS": r.gurobi_tokens_per_s,
                "seconds": r.seconds,
            }
            for r in rows
        ]
        print(json.dumps(out, indent=2))
    else:
        _print_table(rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
