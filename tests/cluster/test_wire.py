"""Tasks and partials on the wire: exact round trips, and nothing but data accepted."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import struct

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quarry.cluster import wire
from quarry.cluster.ops import Task
from quarry.cluster.stats_op import StatsPartial
from quarry.errors import BadRequest
from quarry.query.iplog import Hits
from quarry.query.model import (
    Cursor,
    DistinctQuery,
    FindQuery,
    MembershipQuery,
    VisitsQuery,
    Window,
)
from quarry.query.predicate import parse as parse_where
from quarry.stats.kernels import Distinct, Moments, Rows, ValueCounts
from quarry.stats.request import Aggregate, StatsRequest


@given(st.lists(st.binary(min_size=16, max_size=16), max_size=5),
       st.one_of(st.none(), st.integers(-2**62, 2**62)), st.integers(1, 10**6),
       st.lists(st.integers(-2**63, 2**63 - 1), max_size=20))
def test_round_trip(ips: list[bytes], start: int | None, limit: int, ints: list[int]) -> None:
    q = FindQuery(tuple(ips), Window(start, None), limit, Cursor("ab" * 32, 5, 1, 2))
    t = Task("a/b", "f" * 64, (1, 2, 3), q, True, "a/b@f/1")
    assert wire.unpack(wire.pack(t)) == t
    arr = np.array(ints, dtype=np.int64)
    got = wire.unpack(wire.pack({"x": arr, "s": pa.array([str(i) for i in ints])}))
    assert got["x"].tolist() == ints and got["s"].to_pylist() == [str(i) for i in ints]
    big = sum(ints) * 2**70
    assert wire.unpack(wire.pack((big, -big))) == (big, -big)


def test_refuses_unknown_types_and_objects() -> None:
    @dataclasses.dataclass(frozen=True)
    class Evil:
        x: int

    with pytest.raises(TypeError):
        wire.pack(Evil(1))
    good = wire.pack(Window(1, 2))
    with pytest.raises(BadRequest):
        wire.unpack(good.replace(b"quarry.query.model.Window", b"quarry.query.model.Wind0w"))
    obj = wire.pack(np.arange(2, dtype=np.int64)).replace(b'"<i8"', b'"|O8"')
    with pytest.raises(BadRequest):
        wire.unpack(obj)
    with pytest.raises(BadRequest):
        wire.unpack(b"\x01\x00")


# Hand-packed messages a hostile client could send to /shards/map: each must fail in
# unpack with the one typed error, not deep inside the shard.
V = "f" * 64
IP = {"@b": "AAAAAAAAAAAAAP//AQEBAQ=="}  # ::ffff:1.1.1.1


def _raw(head: object, arrays: tuple[bytes, ...] = ()) -> bytes:
    h, m = orjson.dumps(head), orjson.dumps([len(a) for a in arrays])
    return struct.pack("<II", len(h), len(m)) + h + m + b"".join(arrays)


def _task(query: dict[str, object] | None = None, **fields: object) -> dict[str, object]:
    q = {"ips": {"@t": [IP]}, "limit": 10, "cursor": None,
         "window": {"@c": "quarry.query.model.Window", "f": {"start_us": None, "end_us": 5}}}
    q.update(query or {})
    f = {"dataset": "web", "version": V, "chunks": {"@t": [0]}, "scan": False, "shard": "",
         "query": {"@c": "quarry.query.model.FindQuery", "f": q}}
    f.update(fields)
    return {"@c": "quarry.cluster.ops.Task", "f": f}


HOSTILE = {
    "dataset int": _raw(_task(dataset=5)),
    "dataset list": _raw(_task(dataset=["a"])),
    "dataset bytes": _raw(_task(dataset={"@b": "YQ=="})),
    "dataset null": _raw(_task(dataset=None)),
    "unknown field": _raw({"@c": "quarry.cluster.ops.Task", "f": {"bogus": 1}}),
    "missing field": _raw({"@c": "quarry.cluster.ops.Task", "f": {"dataset": "a"}}),
    "fields not an object": _raw({"@c": "quarry.cluster.ops.Task", "f": 3}),
    "type name not text": _raw({"@c": 3, "f": {}}),
    "@i not digits": _raw({"@i": "x"}),
    "@i not text": _raw({"@i": [1]}),
    "@b not base64": _raw({"@b": "!!"}),
    "@b not text": _raw({"@b": 5}),
    "@a past the arrays": _raw(_task(chunks={"@a": 5, "dtype": "<i8", "shape": [1]})),
    "@a not an index": _raw({"@a": "0", "dtype": "<i8", "shape": [1]}, (b"\0" * 8,)),
    "@a shape vs bytes": _raw({"@a": 0, "dtype": "<i8", "shape": [3]}, (b"\0" * 8,)),
    "@a negative shape": _raw({"@a": 0, "dtype": "<i8", "shape": [-1]}, (b"\0" * 8,)),
    "@a shape not a list": _raw({"@a": 0, "dtype": "<i8", "shape": 1}, (b"\0" * 8,)),
    "@a dtype nonsense": _raw({"@a": 0, "dtype": "<i8,,", "shape": [1]}, (b"\0" * 8,)),
    "@a structured dtype": _raw({"@a": 0, "dtype": "(2,)<i4", "shape": [1]}, (b"\0" * 8,)),
    "@a in a Task field": _raw(_task(chunks={"@a": 0, "dtype": "<i8", "shape": [1]}),
                               (b"\0" * 8,)),
    "@pa not Arrow": _raw({"@pa": 0}, (b"\0" * 8,)),
    "@d pair of one": _raw({"@d": [[1]]}),
    "@d list key": _raw({"@d": [[[1], 2]]}),
    "@d not a list": _raw({"@d": 5}),
    "@t not a list": _raw({"@t": 5}),
    "sizes not counts": struct.pack("<II", 4, 4) + b"null" + b"[-1]",
    "sizes not a list": struct.pack("<II", 4, 1) + b"null" + b"5",
    "window an int": _raw(_task({"window": 5})),
    "version an int": _raw(_task(version=5)),
    "cursor an int": _raw(_task({"cursor": 5})),
    "chunks a list": _raw(_task(chunks=[0])),
    "chunks of bools": _raw(_task(chunks={"@t": [True]})),
    "scan an int": _raw(_task(scan=1)),
    "limit negative": _raw(_task({"limit": -1})),
    "limit a float": _raw(_task({"limit": 1.5})),
    "limit past int64": _raw(_task({"limit": {"@i": str(2**70)}})),
    "address of 2 bytes": _raw(_task({"ips": {"@t": [{"@b": "AAA="}]}})),
    "window past int64": _raw(_task({"window": {"@c": "quarry.query.model.Window",
                                                "f": {"start_us": 2**63 + 5}}})),
    "order unknown": _raw({"@c": "quarry.query.model.DistinctQuery", "f": {"order": "size"}}),
    "aggregate unknown": _raw({"@c": "quarry.stats.request.Aggregate", "f": {"op": "median"}}),
    "filter not on the wire": _raw({"@c": "quarry.stats.request.Filter",
                                    "f": {"field": "ip", "op": "eq", "value": [1]}}),
    "predicate field a number": _raw({"@c": "quarry.query.predicate.Prefix",
                                      "f": {"field": 5, "text": "a"}}),
    "unknown object": _raw({"x": 1}),
    # orjson reads 1024 levels; Python's recursion limit is lower.
    "nested too deep": struct.pack("<II", 1800, 2) + b"[" * 900 + b"]" * 900 + b"[]",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_messages_are_malformed(raw: bytes) -> None:
    with pytest.raises(wire.Malformed):
        wire.unpack(raw)


STATS = StatsPartial((ValueCounts(np.arange(3), None, 5, 1), Rows(7),
                      Moments(2, "a", "b", None), Distinct(pa.array(["x"]))), 9, 8, 2, 1)


def test_partials_round_trip() -> None:
    got = wire.unpack(wire.pack(STATS))
    assert got.totals[0].counts.tolist() == [0, 1, 2] and got.totals[1:3] == STATS.totals[1:3]
    assert got.totals[3].values.to_pylist() == ["x"] and got.rows_scanned == 9


def _valid_tasks() -> list[bytes]:
    ips = (bytes(10) + b"\xff\xff\x01\x01\x01\x01",)
    w = Window(1, 10**12)
    queries = [FindQuery(ips, w, 3, Cursor(V, 5, 0, 1)), MembershipQuery(ips, w),
               VisitsQuery(ips[0], w, 4, 60), DistinctQuery(w, 2, 1, "ip"),
               StatsRequest((Aggregate("count"), Aggregate("top_k", "ip", 3)),
                            parse_where({"ts": {"lte": 5}, "ip": ["a"], "not": {"s": {
                                "prefix": "x"}}}))]
    packed = [wire.pack(Task("web", V, (0, 1), q, False, "s")) for q in queries]
    packed.append(wire.pack(STATS))
    packed.append(wire.pack({"partial": Hits(np.arange(3), np.zeros(3, np.int64),
                                             np.ones(3, np.int64), np.zeros(3, np.uint16),
                                             ips),
                             "x": pa.array(["a", None])}))
    return packed


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["@a", "@b", "@c", "@d", "@i", "@t", "@pa", "f", "dtype", "shape", "x"]),
        inner, max_size=3),
    max_leaves=8)


def _paths(x: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [path]
    if isinstance(x, dict):
        for k, v in x.items():
            out += _paths(v, (*path, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _paths(v, (*path, i))
    return out


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.sampled_from(range(7)), st.data())
def test_mutated_messages_fail_only_as_malformed(which: int, data: st.DataObject) -> None:
    """Any subtree of a valid message replaced by random JSON, or its bytes cut or flipped:
    unpack gives a value or raises wire.Malformed, nothing else."""
    raw = _valid_tasks()[which]
    if data.draw(st.booleans()):
        hlen, mlen = struct.unpack_from("<II", raw)
        head = orjson.loads(raw[8:8 + hlen])
        path = data.draw(st.sampled_from(_paths(head)))
        new = data.draw(_JSON.filter(lambda v: not (isinstance(v, float) and v != v)))
        if path:
            parent = functools.reduce(lambda node, k: node[k], path[:-1], head)
            parent[path[-1]] = new
        else:
            head = new
        try:
            h = orjson.dumps(head)
        except TypeError:  # beyond JSON's 64 bits: not a message anyone can send
            return
        raw = struct.pack("<II", len(h), mlen) + h + raw[8 + hlen:]
    else:
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + data.draw(st.binary(max_size=4)) + raw[at + data.draw(
            st.integers(0, 4)):]
    with contextlib.suppress(wire.Malformed):
        wire.unpack(raw)
