"""Zone maps: per-chunk min/max of key columns, kept in the manifest to skip chunks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.formats.ipaddr import halves


def ip_bounds(ips: np.ndarray) -> tuple[str, str]:
    """Smallest and largest address (as 32 hex digits) in O(n), without sorting."""
    hi, lo = halves(ips)
    hmin, hmax = hi.min(), hi.max()
    lmin = lo[hi == hmin].min()
    lmax = lo[hi == hmax].max()
    return f"{int(hmin):016x}{int(lmin):016x}", f"{int(hmax):016x}{int(lmax):016x}"


def zone_map(table: pa.Table, ips: np.ndarray | None) -> dict[str, list[Any]]:
    """min/max of every timestamp, integer and IP column of a (non-empty) chunk."""
    zones: dict[str, list[Any]] = {}
    for f in table.schema:
        col = table.column(f.name)
        if f.metadata and f.metadata.get(b"quarry.type") == b"ip":
            if ips is not None and len(ips):
                zones[f.name] = list(ip_bounds(ips))
        elif pa.types.is_timestamp(f.type) or pa.types.is_integer(f.type):
            mm = pc.min_max(col.cast(pa.int64()) if pa.types.is_timestamp(f.type) else col)
            if mm["min"].is_valid:
                zones[f.name] = [mm["min"].as_py(), mm["max"].as_py()]
    return zones


def overlaps(zone: Sequence[Any] | None, lo: int | None, hi: int | None) -> bool:
    """Whether a chunk whose column spans ``zone`` can hold values in ``[lo, hi]``."""
    if zone is None:
        return True
    return (lo is None or zone[1] >= lo) and (hi is None or zone[0] <= hi)
