"""Generated grids for benchmarks: nodes drawn from the public GPU offer summary, workloads with
demand scaled to a target utilization. Deterministic for a seed.

Source: ``../shared/data/offers/gpu_offer_prices.csv`` (a summary of public Vast.ai and RunPod
list prices: per-GPU-hour price and the countries offers are in). The GPU mix follows the offer
counts, prices the per-GPU median with a +-15% spread per provider, regions the listed
countries; providers own fleets of identical machines.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridplace.specs import InferenceWorkload, Node

# ../shared/data beside the repository, or where GRIDPLACE_SHARED_DATA points (a worktree).
SHARED_DATA = Path(
    os.environ.get("GRIDPLACE_SHARED_DATA")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
)
OFFERS_CSV = SHARED_DATA / "offers" / "gpu_offer_prices.csv"

# Marketplace accelerator names -> catalog ids (A4000/A4500/A5000 have no catalog entry).
ACCELERATORS = {
    "A10": "a10", "A100": "a100-pcie-40gb", "A100-80GB": "a100-pcie-80gb",
    "A100-80GB-SXM": "a100-sxm-80gb", "A40": "a40", "B200": "b200", "H100": "h100-pcie",
    "H100-NVL": "h100-nvl", "H100-SXM": "h100-sxm", "H200": "h200-sxm", "H200-SXM": "h200-sxm",
    "L4": "l4", "L40": "l40", "L40S": "l40s", "MI300X": "mi300x", "RTX3060": "rtx-3060",
    "RTX3090": "rtx-3090", "RTX4000-Ada": "rtx-4000-ada", "RTX4080": "rtx-4080",
    "RTX4090": "rtx-4090", "RTX5090": "rtx-5090", "RTX6000-Ada": "rtx-6000-ada",
    "RTXA6000": "rtx-a6000", "V100": "v100-sxm-16gb",
}  # fmt: skip
CONSUMER = {"rtx-3060", "rtx-3090", "rtx-4080", "rtx-4090", "rtx-5090"}
SXM = {"a100-sxm-80gb", "b200", "h100-sxm", "h200-sxm", "mi300x", "v100-sxm-16gb"}
# Countries (and a few US/CA states) in the offers -> gridplace regions.
COUNTRY_REGIONS = {
    "US": "us-east", "CA": "ca-central", "NL": "eu-west", "BE": "eu-west", "FR": "eu-west",
    "ES": "eu-south", "PT": "eu-south", "IT": "eu-south", "DE": "eu-central", "CZ": "eu-central",
    "PL": "eu-central", "SI": "eu-central", "HU": "eu-central", "RO": "eu-central",
    "NO": "eu-north", "SE": "eu-north", "IS": "eu-north", "EE": "eu-north", "RU": "eu-north",
    "TW": "ap-east", "HK": "ap-east", "CN": "ap-east", "TH": "ap-southeast",
}  # fmt: skip
STATE_REGIONS = {"California": "us-west", "Oregon": "us-west", "Washington": "us-west",
                 "Utah": "us-west", "Texas": "us-central", "Florida": "us-east",
                 "Alberta": "ca-central", "British Columbia": "ca-central"}  # fmt: skip
MODELS = [  # (model, precisions, weight)
    ("llama-3.1-8b", ["bf16", "fp8", "int4"], 5), ("qwen2.5-7b", ["bf16", "int4"], 3),
    ("phi-3-mini", ["bf16"], 2), ("qwen2.5-14b", ["bf16", "fp8", "int4"], 2),
    ("gemma-2-27b", ["fp8", "int4"], 1), ("qwen2.5-32b", ["fp8", "int4"], 1),
    ("qwen3-30b-a3b", ["fp8", "int4"], 1), ("llama-3.3-70b", ["fp8", "int4"], 1),
]  # fmt: skip
SLO_CLASSES = [  # (ttft ms, itl ms, prompt, output, weight)
    (1000.0, 60.0, 1000, 250, 5), (400.0, 30.0, 600, 150, 2), (10000.0, 200.0, 3000, 500, 1),
]  # fmt: skip


@dataclass(frozen=True)
class Offer:
    gpu: str
    offers: int
    price_per_gpu_hour: float
    regions: tuple[str, ...]


def read_offers(path: Path = OFFERS_CSV) -> list[Offer]:
    """The offer summary, one entry per catalog GPU (marketplaces merged)."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: the benchmark needs ../shared/data beside the repo")
    merged: dict[str, list[Offer]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            gpu = ACCELERATORS.get(row["accelerator"])
            if gpu is None:
                continue
            regions = set()
            for place in row["regions"].split(";"):
                parts = [p.strip() for p in place.split(",")]
                code = parts[1] if len(parts) > 1 else parts[0]
                region = STATE_REGIONS.get(parts[0]) or COUNTRY_REGIONS.get(code)
                if region:
                    regions.add(region)
            merged.setdefault(gpu, []).append(
                Offer(
                    gpu,
                    int(row["offers"]),
                    float(row["usd_per_gpu_hour_median"]),
                    tuple(sorted(regions)),
                )
            )
    offers = []
    for gpu, entries in sorted(merged.items()):
        total = sum(e.offers for e in entries)
        price = sum(e.price_per_gpu_hour * e.offers for e in entries) / total
        regions = tuple(sorted({r for e in entries for r in e.regions}))
        offers.append(Offer(gpu, total, price, regions or ("us-east",)))
    return offers


def generate_nodes(count: int, seed: int = 1, offers: list[Offer] | None = None) -> list[Node]:
    """``count`` nodes owned by providers with fleets of identical machines, as marketplaces
    list them: a community host has 1-3 machines of one kind, a datacenter 2-16 of one kind,
    each at one price (the offer's median, +-15% per provider)."""
    rng = random.Random(seed)
    offers = offers or read_offers()
    weights = [o.offers for o in offers]
    nodes: list[Node] = []
    provider_number = 0
    while len(nodes) < count:
        offer = rng.choices(offers, weights)[0]
        consumer = offer.gpu in CONSUMER
        region = rng.choice(offer.regions)
        provider = f"{'home' if consumer else 'dc'}-{region}-{provider_number}"
        provider_number += 1
        gpus = rng.choice([1, 1, 1, 2, 2, 4]) if consumer else rng.choice([1, 2, 4, 8, 8])
        fleet = rng.randint(1, 3) if consumer else rng.randint(2, 16)
        price = round(offer.price_per_gpu_hour * gpus * rng.uniform(0.85, 1.15), 3)
        throttle = round(rng.choice([0, 0, 0, 0.05, 0.1, 0.25]) if consumer else 0.0, 2)
        reliability = round(rng.uniform(0.9, 0.99) if consumer else rng.uniform(0.97, 0.999), 3)
        for _ in range(min(fleet, count - len(nodes))):
            doc: dict[str, Any] = {
                "metadata": {"name": f"{offer.gpu}-{len(nodes):05d}"},
                "spec": {
                    "region": region,
                    "provider": provider,
                    "pricePerHour": price,
                    "gpus": [{"model": offer.gpu, "count": gpus}],
                    "interconnect": "nvlink" if offer.gpu in SXM and gpus > 1 else "pcie",
                    "networkGbps": 1 if consumer else 25,
                    "reliability": reliability,
                    "claims": "self-reported" if consumer else "probed",
                },
                "status": {
                    "healthy": True,
                    "thermal": {"throttleRatio": throttle, "windowHours": 24},
                },
            }
            nodes.append(Node.model_validate(doc))
    return nodes


def generate_workloads(
    count: int,
    regions: list[str],
    seed: int = 2,
    rps_scale: float = 1.0,
    node_failures: int = 0,
) -> list[InferenceWorkload]:
    """``count`` workloads; each one's rate is ``rps_scale`` x a per-model base rate, each asking
    for ``redundancy.nodeFailures``."""
    rng = random.Random(seed)
    workloads = []
    for index in range(count):
        model, precisions, _ = rng.choices(MODELS, [m[2] for m in MODELS])[0]
        ttft, itl, prompt, output, _ = rng.choices(SLO_CLASSES, [s[4] for s in SLO_CLASSES])[0]
        picked = rng.sample(sorted(regions), k=min(len(regions), rng.choice([1, 1, 2, 3])))
        shares = [round(1 / len(picked), 4)] * len(picked)
        shares[-1] = round(1 - sum(shares[:-1]), 4)
        base = {"phi-3-mini": 4.0, "llama-3.3-70b": 0.6, "qwen2.5-32b": 1.0,
                "gemma-2-27b": 1.0}.get(model, 2.0)  # fmt: skip
        workloads.append(
            InferenceWorkload.model_validate(
                {
                    "metadata": {"name": f"w{index:04d}-{model}"},
                    "spec": {
                        "model": model,
                        "precisions": precisions,
                        "engine": "vllm",
                        "slo": {"ttftMs": ttft, "itlMs": itl},
                        "traffic": {
                            "requestsPerSecond": round(base * rps_scale * rng.uniform(0.5, 1.5), 3),
                            "promptTokens": prompt,
                            "outputTokens": output,
                            "sources": [
                                {"region": r, "share": s}
                                for r, s in zip(picked, shares, strict=True)
                            ],
                        },
                        "replicas": {"min": 1, "max": 64},
                        "redundancy": {"nodeFailures": node_failures},
                        "priority": rng.choice([50, 100, 100, 200]),
                    },
                }
            )
        )
    return workloads
