"""Partials to bytes and back (Arrow IPC, no pickle), to checkpoint them or send them away.

Each partial is one Arrow IPC stream: its arrays as columns, its scalars as JSON in the
schema's metadata; a list of partials is the streams one after the other, each preceded by
its length (8 bytes, little-endian).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from quarry.errors import Corrupt
from quarry.stats.kernels import Distinct, Moments, Partial, Rows, Sketch, ValueCounts

_LEN = struct.Struct("<Q")


def _table(p: Partial) -> tuple[pa.Table, dict[str, Any]]:
    if isinstance(p, Rows):
        return pa.table({}), {"kind": "rows", "n": p.n}
    if isinstance(p, Moments):
        return pa.table({}), {"kind": "moments", "count": p.count, "min": p.min, "max": p.max,
                              "total": p.total}
    if isinstance(p, Sketch):
        return pa.table({"regs": p.regs}), {"kind": "sketch"}
    if isinstance(p, Distinct):
        return pa.table({"values": p.values}), {"kind": "distinct"}
    meta = {"kind": "counts", "base": p.base, "nulls": p.nulls, "dense": p.dense}
    cols: dict[str, Any] = {"counts": p.counts}
    if p.values is not None:
        cols["values"] = p.values
    return pa.table(cols), meta


def _partial(t: pa.Table, meta: dict[str, Any]) -> Partial:
    kind = meta["kind"]
    if kind == "rows":
        return Rows(int(meta["n"]))
    if kind == "moments":
        return Moments(int(meta["count"]), meta["min"], meta["max"], meta["total"])
    if kind == "sketch":
        return Sketch(np.asarray(t.column("regs").to_numpy(), dtype=np.uint8))
    if kind == "distinct":
        col = t.column("values").combine_chunks()
        if pa.types.is_integer(col.type):
            return Distinct(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64))
        return Distinct(col)
    if kind == "counts":
        counts = np.asarray(t.column("counts").to_numpy(), dtype=np.int64)
        values: Any = None
        if not meta["dense"]:
            col = t.column("values").combine_chunks()
            values = (np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
                      if pa.types.is_integer(col.type) else col)
        return ValueCounts(counts, values, int(meta["base"]), int(meta["nulls"]))
    raise Corrupt(f"unknown partial kind {kind!r}")


def encode(partials: list[Partial]) -> bytes:
    out = bytearray()
    for p in partials:
        table, meta = _table(p)
        table = table.replace_schema_metadata({"quarry.partial": orjson.dumps(meta)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        buf = sink.getvalue().to_pybytes()
        out += _LEN.pack(len(buf)) + buf
    return bytes(out)


def decode(raw: bytes) -> list[Partial]:
    out: list[Partial] = []
    pos = 0
    try:
        while pos < len(raw):
            (n,) = _LEN.unpack_from(raw, pos)
            pos += _LEN.size
            table = pa.ipc.open_stream(pa.py_buffer(raw[pos:pos + n])).read_all()
            pos += n
            meta = orjson.loads((table.schema.metadata or {})[b"quarry.partial"])
            out.append(_partial(table, meta))
    except (struct.error, KeyError, pa.ArrowInvalid, orjson.JSONDecodeError) as e:
        raise Corrupt(f"unreadable statistics partials: {e}") from None
    return out
