"""What every records parser shares: the result type, the column types, text helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.formats.ipaddr import IP_TYPE

TS_TYPE = pa.timestamp("us", tz="UTC")
IP_FIELD = pa.field("ip", IP_TYPE, nullable=False, metadata={"quarry.type": "ip"})
TS_FIELD = pa.field("ts", TS_TYPE, nullable=False)


@dataclass(frozen=True)
class Parsed:
    table: pa.Table  # the good rows, in input order
    rejected: np.ndarray  # 0-based positions (within the batch) of malformed lines


class RecordParser(Protocol):
    name: str
    schema: pa.Schema

    def parse(self, lines: pa.BinaryArray, first_line: int) -> Parsed: ...

    def parse_clean(self, raw: bytes) -> Parsed | None:
        """A fast path over a raw block of whole lines, or None to split and ``parse``."""
        ...


def group(st: pa.StructArray, name: str, default: bytes | str) -> pa.Array:
    """A regex group, with ``default`` where the line did not match (the struct is null but
    its children may hold anything there)."""
    child = st.field(name)
    return pc.if_else(st.is_valid(), pc.fill_null(child, default), pa.scalar(default, child.type))


def blank_mask(lines: pa.BinaryArray) -> np.ndarray:
    """Lines holding nothing but white space are skipped, not rejected."""
    m = pc.match_substring_regex(lines, r"^[ \t\r\n]*$")
    return np.asarray(pc.fill_null(m, False).to_numpy(zero_copy_only=False), dtype=bool)


def to_text(arr: pa.Array, dash_is_null: bool = False) -> pa.Array:
    """Binary to UTF-8 strings (undecodable bytes replaced); ``-`` to null for log fields."""
    try:
        out = arr.cast(pa.string())
    except pa.ArrowInvalid:
        out = pa.array([None if v is None else v.decode("utf-8", "replace")
                        for v in arr.to_pylist()], pa.string())
    if dash_is_null:
        out = pc.if_else(pc.equal(out, "-"), pa.scalar(None, pa.string()), out)
    return out
