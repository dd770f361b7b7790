"""Statistics against a plain-Python oracle on hypothesis data, split into random chunks."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quarry.errors import BadRequest
from quarry.stats.execute import Accumulator, ChunkSource, run
from quarry.stats.request import Aggregate, StatsRequest

small_ints = st.integers(-5, 40)
wide_ints = st.integers(-(2**40), 2**40)
texts = st.text(alphabet="abcé", max_size=3)


def chunked(values: list[Any], cuts: list[int]) -> list[list[Any]]:
    points = sorted({min(c, len(values)) for c in cuts} | {0, len(values)})
    return [values[a:b] for a, b in itertools.pairwise(points)]


def oracle_top(values: list[Any], k: int) -> dict[str, Any]:
    c = Counter(v for v in values if v is not None)
    ordered = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    out: dict[str, Any] = {"top": [[v, n] for v, n in ordered[:k]], "distinct": len(c)}
    if len(ordered) > k:
        cutoff = ordered[k - 1][1]
        tied = [v for v, n in ordered[k:] if n == cutoff]
        if tied:
            out["ties"] = {"count": cutoff, "more": len(tied), "values": tied[:20]}
    return out


def compute(values: list[Any], cuts: list[int], aggs: list[str], typ: pa.DataType,
            filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    req = StatsRequest.parse({"aggregates": aggs, "filters": filters or []})
    acc = Accumulator(req)
    for part in chunked(values, cuts):
        acc.add(pa.table({"v": pa.array(part, typ)}))
    return acc.result()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(small_ints, st.none()), max_size=300),
       st.lists(st.integers(0, 300), max_size=5), st.integers(1, 6))
def test_int_stats_match_oracle(values: list[int | None], cuts: list[int], k: int) -> None:
    got = compute(values, cuts, ["count", f"top_k:v:{k}", "group_count:v", "distinct_count:v",
                                 "min:v", "max:v", "mean:v"], pa.int64())
    present = [v for v in values if v is not None]
    assert got["count"] == len(values)
    assert got[f"top_k(v,{k})"] == oracle_top(values, k)
    groups = sorted(Counter(present).items(), key=lambda kv: (-kv[1], kv[0]))
    nulls = len(values) - len(present)
    assert got["group_count(v)"] == [[v, n] for v, n in groups] + ([[None, nulls]] if nulls
                                                                    else [])
    assert got["distinct_count(v)"] == len(set(present))
    assert got["min(v)"] == (min(present) if present else None)
    assert got["max(v)"] == (max(present) if present else None)
    if present:
        assert math.isclose(got["mean(v)"], sum(present) / len(present))


@settings(max_examples=40, deadline=None)
@given(st.lists(wide_ints, max_size=200), st.lists(st.integers(0, 200), max_size=4))
def test_wide_ints_use_sparse_counts_correctly(values: list[int], cuts: list[int]) -> None:
    got = compute(values, cuts, ["top_k:v:3", "distinct_count:v"], pa.int64())
    assert got["top_k(v,3)"] == oracle_top(values, 3)
    assert got["distinct_count(v)"] == len(set(values))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(texts, st.none()), max_size=200),
       st.lists(st.integers(0, 200), max_size=4))
def test_text_stats_match_oracle(values: list[str | None], cuts: list[int]) -> None:
    got = compute(values, cuts, ["top_k:v:2", "distinct_count:v", "min:v", "max:v"],
                  pa.string())
    present = [v for v in values if v is not None]
    assert got["top_k(v,2)"] == oracle_top(values, 2)
    assert got["distinct_count(v)"] == len(set(present))
    assert got["min(v)"] == (min(present) if present else None)
    assert got["max(v)"] == (max(present) if present else None)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=200),
       st.lists(st.integers(0, 200), max_size=4), st.sampled_from([1, 60, 3600]))
def test_histogram_of_timestamps(seconds: list[int], cuts: list[int], bucket: int) -> None:
    values: list[int | None] = [s * 1_000_000 + 123 for s in seconds]
    values.append(None)  # nulls fall in no bucket
    got = compute(values, cuts, [f"histogram:v:{bucket}"], pa.timestamp("us", tz="UTC"))
    want = sorted(Counter(s // bucket * bucket for s in seconds).items())
    assert got[f"histogram(v,{bucket})"] == [[b, n] for b, n in want]


@settings(max_examples=40, deadline=None)
@given(st.lists(small_ints, max_size=200), st.lists(st.integers(0, 200), max_size=4),
       small_ints, small_ints)
def test_filters_match_oracle(values: list[int], cuts: list[int], lo: int, hi: int) -> None:
    filters = [{"field": "v", "op": "range", "value": [lo, hi]},
               {"field": "v", "op": "in", "value": [lo, hi, 3, 7]}]
    got = compute(values, cuts, ["count", "top_k:v:2"], pa.int64(), filters)
    kept = [v for v in values if lo <= v <= hi and v in (lo, hi, 3, 7)]
    assert got["count"] == len(kept)
    assert got["top_k(v,2)"] == oracle_top(kept, 2)


@pytest.mark.parametrize("n", [1_000, 200_000])
def test_approximate_distinct_is_close(n: int) -> None:
    rng = np.random.default_rng(n)
    ints = rng.integers(0, 2**62, n)
    req = StatsRequest((Aggregate("distinct_count", "i", approx=True),
                        Aggregate("distinct_count", "s", approx=True)))
    acc = Accumulator(req)
    names = [f"user-{x}" for x in ints % (n // 2)]
    for part in np.array_split(np.arange(n + n // 2) % n, 7):
        acc.add(pa.table({"i": ints[part], "s": pa.array([names[i] for i in part])}))
    r = acc.result()
    assert abs(r["distinct_count(i,approx)"] - n) / n < 0.03
    want = len(set(names))
    assert abs(r["distinct_count(s,approx)"] - want) / want < 0.03


def test_run_prunes_chunks_by_zone_maps() -> None:
    tables = [pa.table({"v": np.arange(i * 100, (i + 1) * 100)}) for i in range(10)]
    chunks = [ChunkSource(lambda cols, t=t: t.select(list(cols)), 100,
                          {"v": [i * 100, i * 100 + 99]}) for i, t in enumerate(tables)]
    req = StatsRequest.parse({"aggregates": ["count", "max:v"],
                              "filters": [{"field": "v", "op": "range", "value": [250, 420]}]})
    out = run(req, chunks, tables[0].schema)
    assert out["results"] == {"count": 171, "max(v)": 420}
    assert out["chunks"] == 10 and out["chunks_pruned"] == 7


@pytest.mark.parametrize("doc, message", [
    ({"aggregates": []}, "1 to 32"),
    ({"aggregates": ["nope:v"]}, "unknown aggregate"),
    ({"aggregates": ["top_k"]}, "needs a field"),
    ({"aggregates": ["top_k:v:0"]}, "k must be"),
    ({"aggregates": ["count"], "filters": [{"field": "v", "op": "like", "value": 1}]},
     "filter op"),
    ({"aggregates": "count"}, "must be a list"),
])
def test_bad_requests_are_clear(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        StatsRequest.parse(doc)


def test_mean_of_text_is_refused() -> None:
    with pytest.raises(BadRequest, match="mean needs a number"):
        compute(["a"], [], ["mean:v"], pa.string())
