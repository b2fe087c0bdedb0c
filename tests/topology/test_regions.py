"""The built-in region-to-region table and the script that derives it (on synthetic input: unit
tests never read ../shared)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
import yaml

from gridplace.topology import RegionTable, RegionTableError, builtin_regions
from gridplace.topology.derive_regions import (
    REGIONS,
    DerivationError,
    derive_table,
    main,
    read_directional_p50,
    render_table,
)
from gridplace.topology.estimate import SAME_REGION_RTT_MS

CORE = [
    "us-east", "us-west", "us-central", "ca-central", "eu-west", "eu-central", "eu-north",
    "uk-south", "ap-northeast", "ap-southeast", "sa-east",
]  # fmt: skip


def test_the_shipped_table_covers_every_pair_of_its_regions_symmetrically() -> None:
    table = builtin_regions()
    assert set(CORE) <= table.regions
    assert table.regions == set(REGIONS)
    for a, b in combinations(sorted(table.regions), 2):
        forward, backward = table.backbone_ms(a, b), table.backbone_ms(b, a)
        assert forward is not None and forward == backward
        assert 0 < forward < 400
    assert table.backbone_ms("eu-west", "eu-west") == SAME_REGION_RTT_MS
    assert table.backbone_ms("eu-west", "nowhere") is None


def test_the_shipped_table_orders_distances_plausibly() -> None:
    table = builtin_regions()
    europe = table.backbone_ms("eu-west", "eu-central")
    atlantic = table.backbone_ms("eu-west", "us-east")
    pacific = table.backbone_ms("eu-west", "ap-northeast")
    assert europe is not None and atlantic is not None and pacific is not None
    assert europe < atlantic < pacific


def test_the_shipped_file_names_its_source() -> None:
    text = (Path(__file__).parents[2] / "gridplace/topology/data/region_rtt.yaml").read_text()
    assert "CC BY 4.0" in text and "Azure" in text


def write_pairs(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    lines = ["source,target,source_code,target_code,rtt_ms,percentile"]
    lines += [f"{s},{t},x,y,{ms},P50" for s, t, ms in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_derivation_averages_directions_and_rounds_to_half_ms(tmp_path: Path) -> None:
    regions = {"r-a": "Alpha", "r-b": "Beta", "r-c": "Gamma"}
    directional = read_directional_p50(
        write_pairs(
            tmp_path / "pairs.csv",
            [("Alpha", "Beta", 10), ("Beta", "Alpha", 13), ("Alpha", "Gamma", 7.2),
             ("Gamma", "Beta", 20), ("Delta", "Alpha", 1)],
        )
    )  # fmt: skip
    table = derive_table(directional, regions)
    assert table == {("r-a", "r-b"): 11.5, ("r-a", "r-c"): 7.0, ("r-b", "r-c"): 20.0}
    loaded = RegionTable.from_mapping(yaml.safe_load(render_table(table, regions)))
    assert loaded.backbone_ms("r-b", "r-a") == 11.5
    assert loaded.stands_for["r-c"] == "Gamma"


def test_derivation_refuses_an_incomplete_table(tmp_path: Path) -> None:
    directional = {("Alpha", "Beta"): 10.0}
    with pytest.raises(DerivationError, match="r-a \\(Alpha\\) <-> r-c \\(Gamma\\)"):
        derive_table(directional, {"r-a": "Alpha", "r-b": "Beta", "r-c": "Gamma"})


def test_the_script_reports_missing_data_and_exits_1(tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "out.yaml")]) == 1
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"regions": {"Bad Name": "x"}, "rttMs": []},
        {"regions": {"a": "x", "b": "y"}, "rttMs": "no"},
        {"regions": {"a": "x", "b": "y"}, "rttMs": [["a", "c", 5]]},
        {"regions": {"a": "x", "b": "y"}, "rttMs": [["a", "b", -5]]},
        {"regions": {"a": "x", "b": "y"}, "rttMs": [["a", "a", 5]]},
    ],
)
def test_a_malformed_table_is_rejected(data: object) -> None:
    with pytest.raises(RegionTableError):
        RegionTable.from_mapping(data)
