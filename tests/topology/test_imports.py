"""The planner's side of topology must not pull in networkx (DESIGN.md: the planner never sees
it); the graph module does."""

from __future__ import annotations

import subprocess
import sys


def modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def test_the_package_and_the_lookup_do_not_import_networkx() -> None:
    loaded = modules_after(
        "import gridplace.topology\nfrom gridplace.topology import LatencyLookup, Percentile\n"
        "import gridplace.topology.lookup, gridplace.topology.samples"
    )
    assert "gridplace.topology.lookup" in loaded
    assert "networkx" not in loaded


def test_the_topology_class_loads_the_graph_on_first_use() -> None:
    loaded = modules_after("from gridplace.topology import Topology")
    assert "networkx" in loaded
