"""Tasks and partials on the wire: exact round trips, and nothing but data accepted."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quarry.cluster import wire
from quarry.cluster.ops import Task
from quarry.errors import BadRequest
from quarry.query.model import Cursor, FindQuery, Window


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
