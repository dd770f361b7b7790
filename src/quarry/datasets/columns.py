"""Chunk columns as comparable numpy arrays, zero copy where Arrow's layout allows.

Filters and keys compare numbers as int64/float64 (timestamps as µs), addresses as 16-byte
``S16`` strings (byte order is address order) and strings through their chunk dictionary:
a predicate is evaluated once per distinct value and mapped to rows by the indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from quarry.datasets.records import Chunk
from quarry.formats.tabular import logical_type


@dataclass(frozen=True)
class Column:
    logical: str  # int, float, string, timestamp, ip
    values: np.ndarray  # int64, float64, S16, or int32 dictionary indices for strings
    valid: np.ndarray | None  # None: no nulls
    dictionary: pa.Array | None = None  # strings: the chunk's distinct values

    def __len__(self) -> int:
        return len(self.values)


def _values(arr: pa.Array, logical: str) -> np.ndarray:
    n, off = len(arr), arr.offset
    if logical == "ip":
        raw = np.frombuffer(arr.buffers()[1], dtype="S16")
        return raw[off:off + n]
    if logical == "string":
        idx = arr.indices
        dt = np.dtype(idx.type.to_pandas_dtype())
        return np.frombuffer(idx.buffers()[1], dtype=dt)[idx.offset:idx.offset + n].astype(
            np.int32, copy=False)
    t = arr.type
    if pa.types.is_timestamp(t):
        t = pa.int64()
    if pa.types.is_boolean(t):
        return np.asarray(arr.cast(pa.int64()).fill_null(0))
    dt = np.dtype(t.to_pandas_dtype())
    out = np.frombuffer(arr.buffers()[1], dtype=dt)[off:off + n]
    want = np.float64 if logical == "float" else np.int64
    return out.astype(want, copy=False)


def column(chunk: Chunk, name: str) -> Column:
    """The named column of ``chunk`` (cached on the chunk: columns are immutable)."""
    hit: Column | None = chunk.columns.get(name)
    if hit is not None:
        return hit
    table = chunk.table
    f = table.schema.field(name)
    logical = logical_type(f)
    col = table.column(name)
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if logical == "string" and not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()  # access-log strings are stored plain
    valid = None
    if arr.null_count:
        valid = np.asarray(arr.is_valid(), dtype=bool)
    out = Column(logical, _values(arr, logical), valid,
                 arr.dictionary if logical == "string" else None)
    chunk.columns[name] = out
    return out
