"""Tasks and partials on the wire between Quarry servers: JSON plus raw array bytes.

``pack`` writes a 4-byte header length, a JSON tree, then the bytes of every numpy array in
it. Only registered frozen dataclasses, numbers, strings, bytes, lists, tuples, dicts and
arrays of plain dtypes round-trip, so nothing a peer sends can make this process run code
(unlike pickle).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
import struct
import types
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from quarry.errors import BadRequest, Malformed

__all__ = ["MEDIA_TYPE", "Malformed", "pack", "register", "unpack"]

_TYPES: dict[str, type[Any]] = {}
# Booleans, integers, floats of either byte order: never objects.
_DTYPE = re.compile(r"[<>|=][biuf](1|2|4|8|16)")
MEDIA_TYPE = "application/x-quarry-wire"
# Far deeper than any task or partial (about 6), far shallower than Python's recursion limit.
MAX_DEPTH = 64


def register(*types: type[Any]) -> None:
    for t in types:
        if not dataclasses.is_dataclass(t):
            raise TypeError(f"{t.__name__} is not a dataclass")
        name = f"{t.__module__}.{t.__qualname__}"
        _TYPES[name] = t
        _SPECS.pop(name, None)


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
    """The object ``pack`` wrote; :class:`Malformed` (a 400) for anything else.

    Whatever a peer sends is checked as it is built: framing, array bounds and dtypes, and each
    registered dataclass's fields against its type hints, so a hostile message fails here with
    one typed error instead of deep inside a query.
    """
    try:
        hlen, mlen = struct.unpack_from("<II", data)
        head = orjson.loads(data[8:8 + hlen])
        sizes = orjson.loads(data[8 + hlen:8 + hlen + mlen])
    except (struct.error, orjson.JSONDecodeError) as e:
        raise Malformed(f"malformed wire message: {e}") from None
    if not isinstance(sizes, list) or not all(type(s) is int and s >= 0 for s in sizes):
        raise Malformed("malformed wire message: array sizes are not a list of byte counts")
    offsets = [8 + hlen + mlen]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    if offsets[-1] != len(data):
        raise Malformed("malformed wire message: array bytes do not add up")
    return _Decoder(memoryview(data), offsets).dec(head, 0)


class _Decoder:
    def __init__(self, buf: memoryview, offsets: list[int]) -> None:
        self.buf = buf
        self.offsets = offsets

    def _bytes(self, i: Any) -> memoryview:
        if type(i) is not int or not 0 <= i < len(self.offsets) - 1:
            raise Malformed(f"array {str(i)[:20]!r} is not in the message")
        return self.buf[self.offsets[i]:self.offsets[i + 1]]

    def dec(self, x: Any, depth: int) -> Any:
        if isinstance(x, list):
            if depth >= MAX_DEPTH:
                raise Malformed(f"wire message nested deeper than {MAX_DEPTH}")
            return [self.dec(v, depth + 1) for v in x]
        if not isinstance(x, dict):
            return x
        if depth >= MAX_DEPTH:
            raise Malformed(f"wire message nested deeper than {MAX_DEPTH}")
        if "@a" in x:
            return self._array(x)
        if "@pa" in x:
            raw = self._bytes(x["@pa"])
            try:
                table = pa.ipc.open_stream(pa.py_buffer(bytes(raw))).read_all()
                if table.num_columns != 1:
                    raise Malformed("an Arrow array on the wire has one column")
                return table.column(0).combine_chunks()
            except pa.ArrowException as e:
                raise Malformed(f"malformed Arrow array on the wire: {e}") from None
        if "@i" in x:
            text = x["@i"]
            try:
                if not isinstance(text, str):
                    raise ValueError(text)
                return int(text)
            except ValueError:
                raise Malformed(f"@i must be an integer as text, got {str(text)[:40]!r}") \
                    from None
        if "@b" in x:
            try:  # binascii directly: base64's wrapper costs as much as the decoding
                return binascii.a2b_base64(x["@b"], strict_mode=True)
            except (ValueError, TypeError):
                raise Malformed("@b must be base64 text") from None
        if "@t" in x:
            if not isinstance(x["@t"], list):
                raise Malformed("@t must be a list")
            return tuple([self.dec(v, depth + 1) for v in x["@t"]])
        if "@d" in x:
            return self._dict(x["@d"], depth)
        if "@c" in x:
            return self._object(x, depth)
        raise Malformed("malformed wire message: unknown object")

    def _array(self, x: dict[str, Any]) -> np.ndarray:
        raw = self._bytes(x["@a"])
        code = x.get("dtype")
        # Only what ``pack`` writes (dtype.str of a plain array): numpy parses anything else,
        # structured and object types included, with errors of every kind.
        if not isinstance(code, str) or not _DTYPE.fullmatch(code):
            raise Malformed(f"array type {str(code)[:40]!r} is not allowed on the wire")
        dt = np.dtype(code)
        shape = x.get("shape")
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise Malformed("an array's shape must be a list of sizes")
        if len(raw) != dt.itemsize * math.prod(shape):
            raise Malformed(f"array of shape {shape} and type {dt} is not {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dt).reshape(shape)

    def _dict(self, items: Any, depth: int) -> dict[Any, Any]:
        if not isinstance(items, list) or not all(
                isinstance(kv, list) and len(kv) == 2 for kv in items):
            raise Malformed("@d must be a list of [key, value] pairs")
        out: dict[Any, Any] = {}
        for k, v in items:
            key = self.dec(k, depth + 1)
            try:
                out[key] = self.dec(v, depth + 1)
            except TypeError:
                raise Malformed(f"a {type(key).__name__} cannot be a key") from None
        return out

    def _object(self, x: dict[str, Any], depth: int) -> Any:
        name = x["@c"]
        spec = _spec(name) if isinstance(name, str) else None
        if spec is None:
            raise Malformed(f"{str(name)[:80]} is not a type this server accepts")
        raw = x.get("f")
        if not isinstance(raw, dict):
            raise Malformed(f"{spec.name}: its fields must be an object")
        kwargs: dict[str, Any] = {}
        for k, v in raw.items():
            check = spec.fields.get(k)
            if check is None:
                raise Malformed(f"{spec.name} has no field {k[:40]!r}")
            value = self.dec(v, depth + 1)
            if not check(value):
                raise Malformed(f"{spec.name}.{k} must be {spec.hints[k]}, got "
                                f"{type(value).__name__}")
            kwargs[k] = value
        if not spec.required <= kwargs.keys():
            raise Malformed(f"{spec.name} needs {', '.join(sorted(spec.required - kwargs.keys()))}")
        try:
            return spec.type(**kwargs)
        except BadRequest as e:  # the type's own checks (__post_init__) of its values
            raise Malformed(f"{spec.name}: {e.detail}") from None


_Check = Callable[[Any], bool]


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How to check a registered type's fields: one predicate per field, from its hints."""

    type: type[Any]
    name: str
    fields: dict[str, _Check]
    hints: dict[str, str]
    required: frozenset[str]


_SPECS: dict[str, _Spec] = {}


def _spec(name: str) -> _Spec | None:
    # Built on first use: type hints can name classes defined after ``register`` ran.
    spec = _SPECS.get(name)
    if spec is None and name in _TYPES:
        t = _TYPES[name]
        hints = typing.get_type_hints(t)
        fields = [f for f in dataclasses.fields(t) if f.init]
        spec = _SPECS[name] = _Spec(
            t, t.__name__, {f.name: _checker(hints[f.name]) for f in fields},
            {f.name: _hint_text(hints[f.name]) for f in fields},
            frozenset(f.name for f in fields if f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING))
    return spec


def _hint_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _checker(hint: Any) -> _Check:
    """A predicate for values of type ``hint`` as ``unpack`` builds them (tuples stay tuples)."""
    if hint is Any:
        return lambda v: True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        alts = [_checker(a) for a in args]
        return lambda v: any(c(v) for c in alts)
    if origin is typing.Literal:
        return lambda v: any(type(v) is type(a) and v == a for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] in (bytes, str, int):
            # Exact types, in C: tuples of 10k addresses cross the wire (and no bool is
            # an int here either). Only for these: a class may have subclasses (a tuple of
            # predicates holds Range, Not, ...), and a float field takes ints.
            exact = frozenset([args[0]])
            return lambda v: isinstance(v, tuple) and set(map(type, v)) <= exact
        each = _checker(args[0])
        return lambda v: isinstance(v, tuple) and all(each(x) for x in v)
    if origin is tuple:
        items = [_checker(a) for a in args]
        return lambda v: (isinstance(v, tuple) and len(v) == len(items)
                          and all(c(x) for c, x in zip(items, v, strict=True)))
    if origin is list:
        each = _checker(args[0]) if args else _checker(Any)
        return lambda v: isinstance(v, list) and all(each(x) for x in v)
    if origin is dict:
        kc, vc = (_checker(args[0]), _checker(args[1])) if args else (_checker(Any),) * 2
        return lambda v: isinstance(v, dict) and all(kc(k) and vc(x) for k, x in v.items())
    if hint is None or hint is type(None):
        return lambda v: v is None
    if hint is int:  # bool is an int to Python, never to a field typed int
        return lambda v: type(v) is int
    if hint is float:  # JSON writes 3.0 as 3 in some encoders: an int is a float here
        return lambda v: type(v) is float or type(v) is int
    if isinstance(hint, type):
        return lambda v: isinstance(v, hint)
    raise TypeError(f"cannot check {hint!r} on the wire")


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
