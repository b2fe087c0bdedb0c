"""A 70B model at 4-bit on single-GPU 24 GB nodes, planned by ``gridplace plan`` from the
shipped example (``examples/pipeline``): a pipeline in one region, and the same cards one per
region, three regions 50 ms apart, refused for ITL with the network named.

Reproduce::

    .venv/bin/python bench/pipeline_example.py

(the same as ``gridplace plan -n examples/pipeline/<grid>/nodes.yaml -w
examples/pipeline/workload.yaml -p examples/pipeline/<grid>/probes.yaml``). Figures are the
performance model's (vLLM, int4, RTX 4090) and the example's probes (4 ms inside a region,
100 ms round trip between regions); a stage takes its share of the layers
(``gridplace.planner.pipeline_predict``, ``pipeline_options``).
"""

from __future__ import annotations

from pathlib import Path

from gridplace.api.wiring import plan_bundle
from gridplace.specs import load_bundle

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline"


def main() -> int:
    for grid in ("one-region", "three-regions"):
        files = [
            EXAMPLE / grid / "nodes.yaml",
            EXAMPLE / "workload.yaml",
            EXAMPLE / grid / "probes.yaml",
        ]
        plan = plan_bundle(load_bundle(files), fix_budget_s=0).plan
        assert plan.status is not None
        print(f"{grid}:")
        for note in plan.status.notes:
            print(f"  {note}")
        for unplaced in plan.status.unplaced:
            print(f"  refused: {unplaced.reasons[0]}")
    print("reproduce: .venv/bin/python bench/pipeline_example.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
