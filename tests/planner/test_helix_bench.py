"""``bench/helix.py``'s import of Helix's throughput model reproduces Helix's own figures: its
MILP layouts, evaluated by our max flow, score Gurobi's objectives (needs ``../shared``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_scripts import load_bench


def test_quantities_parse_units_and_refuse_junk() -> None:
    helix = load_bench("helix")
    assert helix._quantity("12.5 * mbps") == 12.5e6
    assert helix._quantity("40 * GB") == 40e9
    with pytest.raises(ValueError, match="not a quantity"):
        helix._quantity("__import__('os')")


@pytest.mark.parametrize(
    "instance", ["single_cluster", "distributed_clusters", "high_heterogeneity"]
)
def test_helix_milp_layouts_score_gurobis_objective(instance: str) -> None:
    helix = load_bench("helix")
    data = helix._default_data()
    if not (data / "derived").is_dir():
        pytest.skip("no ../shared/data/helix here")
    cluster = helix.load_cluster(data, helix.INSTANCES[instance])
    counts: dict[str, int] = {}
    for gpu in cluster.types.values():
        counts[gpu] = counts.get(gpu, 0) + 1
    model = helix.load_helix(data, counts)
    layout = helix.shipped_layout(data, helix.INSTANCES[instance], "ilp")
    ours = helix.evaluate(model, cluster, layout)
    assert ours == pytest.approx(helix.gurobi_objectives(data)[instance], abs=0.01)


def test_missing_or_broken_data_is_refused_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    helix = load_bench("helix")
    assert helix.main(["--data", str(tmp_path)]) == 2
    assert "no Helix data" in capsys.readouterr().err
    (tmp_path / "derived").mkdir()
    assert helix.main(["--data", str(tmp_path), "--instance", "single_cluster"]) == 2
    assert "cannot read the Helix data" in capsys.readouterr().err
