"""Seeded random streams: one generator per (run seed, thing, purpose).

Owns: how streams are derived, so that every draw is reproducible and independent of the order
things are simulated in (adding a workload or a node changes no other stream).
"""

from __future__ import annotations

import zlib

import numpy as np

PURPOSE_ARRIVALS = 1
PURPOSE_EFFICIENCY = 11
PURPOSE_THERMAL = 12
PURPOSE_FAILURE = 13
PURPOSE_BIAS = 14


def stream(seed: int, name: str, purpose: int) -> np.random.Generator:
    """The generator of ``purpose`` for the thing called ``name`` in run ``seed``."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), purpose])
