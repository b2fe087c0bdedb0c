"""The built-in region-to-region RTT defaults (package data ``data/region_rtt.yaml``).

Owns: reading and checking the table, and answering "backbone RTT between two regions". The
table is derived by ``derive_regions.py`` from public Azure inter-region P50 measurements (CC BY
4.0, source in the file's header). Must not: read anything outside the package at run time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from gridplace.topology.errors import RegionTableError
from gridplace.topology.estimate import SAME_REGION_RTT_MS

REGION_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TABLE_FILE = "region_rtt.yaml"


@dataclass(frozen=True)
class RegionTable:
    """Symmetric backbone RTTs between named regions, in ms."""

    rtt_ms_by_pair: Mapping[tuple[str, str], float]  # keys sorted: (a, b) with a < b
    stands_for: Mapping[str, str]  # region -> the measured location it stands for

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(self.stands_for)

    def backbone_ms(self, region_a: str, region_b: str) -> float | None:
        """RTT between two regions; the metro figure for one region; None if unknown."""
        if region_a == region_b:
            return SAME_REGION_RTT_MS
        key = (region_a, region_b) if region_a < region_b else (region_b, region_a)
        return self.rtt_ms_by_pair.get(key)

    @classmethod
    def from_mapping(cls, data: Any, origin: str = TABLE_FILE) -> RegionTable:
        """Check and build a table from its YAML mapping (``regions``, ``rttMs`` rows)."""
        if not isinstance(data, dict) or not isinstance(data.get("regions"), dict):
            raise RegionTableError(f"{origin}: expected a mapping with 'regions' and 'rttMs'")
        stands_for = {str(k): str(v) for k, v in data["regions"].items()}
        bad_names = [name for name in stands_for if not REGION_NAME.match(name)]
        if bad_names:
            raise RegionTableError(
                f"{origin}: region names must be lowercase with '-': {bad_names}"
            )
        rows = data.get("rttMs")
        if not isinstance(rows, list):
            raise RegionTableError(f"{origin}: 'rttMs' must be a list of [region, region, ms]")
        pairs: dict[tuple[str, str], float] = {}
        for index, row in enumerate(rows):
            if not (
                isinstance(row, list)
                and len(row) == 3
                and row[0] in stands_for
                and row[1] in stands_for
                and row[0] != row[1]
                and isinstance(row[2], int | float)
                and 0 < row[2] < 60_000
            ):
                raise RegionTableError(f"{origin}: rttMs[{index}] is not [region, region, ms]")
            a, b = sorted((str(row[0]), str(row[1])))
            pairs[(a, b)] = float(row[2])
        return cls(rtt_ms_by_pair=pairs, stands_for=stands_for)


@functools.cache
def builtin_regions() -> RegionTable:
    """The shipped table (read once per process)."""
    try:
        text = resources.files("gridplace.topology").joinpath("data", TABLE_FILE).read_text("utf-8")
    except OSError as error:
        raise RegionTableError(f"cannot read the built-in {TABLE_FILE}: {error}") from error
    return RegionTable.from_mapping(yaml.safe_load(text))
