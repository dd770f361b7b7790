"""Tasks and partials on the wire between Quarry servers: JSON plus raw array bytes.

``pack`` writes a 4-byte header length, a JSON tree, then the bytes of every numpy array in
it. Only registered frozen dataclasses, numbers, strings, bytes, lists, tuples, dicts and
arrays of plain dtypes round-trip, so nothing a peer sends can make this process run code
(unlike pickle).
"""

from __future__ import annotations

import base64
import dataclasses
import struct
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from quarry.errors import BadRequest

_TYPES: dict[str, type[Any]] = {}
_KINDS = frozenset("biuf")  # booleans, integers, floats: never objects
MEDIA_TYPE = "application/x-quarry-wire"


def register(*types: type[Any]) -> None:
    for t in types:
        if not dataclasses.is_dataclass(t):
            raise TypeError(f"{t.__name__} is not a dataclass")
        _TYPES[f"{t.__module__}.{t.__qualname__}"] = t


def pack(obj: Any) -> bytes:
    arrays: list[bytes] = []

    def enc(x: Any) -> Any:
        if isinstance(x, int) and not isinstance(x, bool) and not -(1 << 63) <= x < (1 << 64):
            return {"@i": str(x)}  # JSON numbers stop at 64 bits; sums of times do not
        if x is None or isinstance(x, bool | int | float | str):
            return x
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            arr = np.ascontiguousarray(x)
            arrays.append(arr.tobytes())
            return {"@a": len(arrays) - 1, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        if isinstance(x, pa.Array):
            # Arrow IPC: typed data only (strings, timestamps...), never code.
            sink = pa.BufferOutputStream()
            batch = pa.record_batch([x], names=["v"])
            with pa.ipc.new_stream(sink, batch.schema) as w:
                w.write_batch(batch)
            arrays.append(sink.getvalue().to_pybytes())
            return {"@pa": len(arrays) - 1}
        if isinstance(x, bytes):
            return {"@b": base64.b64encode(x).decode()}
        if isinstance(x, tuple):
            return {"@t": [enc(v) for v in x]}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if isinstance(x, dict):
            return {"@d": [[enc(k), enc(v)] for k, v in x.items()]}
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            name = f"{type(x).__module__}.{type(x).__qualname__}"
            if name not in _TYPES:
                raise TypeError(f"{name} is not registered for the wire")
            return {"@c": name, "f": {f.name: enc(getattr(x, f.name))
                                      for f in dataclasses.fields(x)}}
        raise TypeError(f"cannot send a {type(x).__name__}")

    head = orjson.dumps(enc(obj))
    sizes = [len(a) for a in arrays]
    meta = orjson.dumps(sizes)
    return b"".join([struct.pack("<II", len(head), len(meta)), head, meta, *arrays])


def unpack(data: bytes) -> Any:
    try:
        hlen, mlen = struct.unpack_from("<II", data)
        head = orjson.loads(data[8:8 + hlen])
        sizes = orjson.loads(data[8 + hlen:8 + hlen + mlen])
        offsets = [8 + hlen + mlen]
        for s in sizes:
            offsets.append(offsets[-1] + int(s))
        if offsets[-1] != len(data):
            raise ValueError("array bytes do not add up")
    except (struct.error, orjson.JSONDecodeError, ValueError, TypeError) as e:
        raise BadRequest(f"malformed wire message: {e}") from None
    buf = memoryview(data)

    def dec(x: Any) -> Any:
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "@a" in x:
            try:
                dt = np.dtype(str(x["dtype"]))
            except TypeError:
                raise BadRequest(f"unknown array type {x['dtype']!r}") from None
            if dt.kind not in _KINDS or dt.hasobject:
                raise BadRequest(f"array type {dt} is not allowed on the wire")
            i = int(x["@a"])
            arr = np.frombuffer(buf[offsets[i]:offsets[i + 1]], dtype=dt)
            return arr.reshape([int(n) for n in x["shape"]])
        if "@pa" in x:
            i = int(x["@pa"])
            try:
                table = pa.ipc.open_stream(pa.py_buffer(bytes(buf[offsets[i]:offsets[i + 1]])))
                return table.read_all().column(0).combine_chunks()
            except (pa.ArrowInvalid, IndexError) as e:
                raise BadRequest(f"malformed Arrow array on the wire: {e}") from None
        if "@i" in x:
            return int(str(x["@i"]))
        if "@b" in x:
            return base64.b64decode(x["@b"])
        if "@t" in x:
            return tuple(dec(v) for v in x["@t"])
        if "@d" in x:
            return {dec(k): dec(v) for k, v in x["@d"]}
        if "@c" in x:
            t = _TYPES.get(str(x["@c"]))
            if t is None:
                raise BadRequest(f"{x['@c']} is not a type this server accepts")
            return t(**{k: dec(v) for k, v in x["f"].items()})
        raise BadRequest("malformed wire message: unknown object")

    return dec(head)


def _register_defaults() -> None:
    from quarry.cluster.ops import Task
    from quarry.query.iplog import AddressCounts, Hits, Visits
    from quarry.query.model import (
        Cursor,
        DistinctQuery,
        FindQuery,
        MembershipQuery,
        VisitsQuery,
        Window,
    )
    from quarry.query.predicate import NODE_TYPES

    register(Task, Window, Cursor, FindQuery, MembershipQuery, VisitsQuery, DistinctQuery,
             Hits, Visits, AddressCounts, *NODE_TYPES)


_register_defaults()
