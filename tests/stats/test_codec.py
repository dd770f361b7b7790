from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quarry.errors import Corrupt
from quarry.stats import codec
from quarry.stats.execute import Accumulator
from quarry.stats.kernels import finalize
from quarry.stats.request import StatsRequest

AGGS = ["count", "top_k:v:3", "group_count:v", "distinct_count:v", "distinct_count:v:approx",
        "min:v", "max:v", "histogram:v:7"]


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.lists(st.one_of(st.integers(-50, 50), st.none()), max_size=100),
                 st.lists(st.integers(-(2**50), 2**50), max_size=50)))
def test_partials_round_trip(values: list[Any]) -> None:
    req = StatsRequest.parse({"aggregates": AGGS})
    acc = Accumulator(req)
    parts = acc.partials(pa.table({"v": pa.array(values, pa.int64())}))
    back = codec.decode(codec.encode(parts))
    for a, p, q in zip(req.aggregates, parts, back, strict=True):
        assert finalize(a, p) == finalize(a, q)


def test_text_partials_round_trip() -> None:
    req = StatsRequest.parse({"aggregates": ["top_k:v:2", "distinct_count:v", "max:v"]})
    parts = Accumulator(req).partials(pa.table({"v": ["a", "b", "b", None]}))
    back = codec.decode(codec.encode(parts))
    assert [finalize(a, p) for a, p in zip(req.aggregates, back, strict=True)] == [
        {"top": [["b", 2], ["a", 1]], "distinct": 2}, 2, "b"]


def test_damaged_partials_are_reported() -> None:
    with pytest.raises(Corrupt):
        codec.decode(b"\x05\x00\x00\x00\x00\x00\x00\x00abc")
