"""Composite keys: build, store as a blob and read back, look up by segments."""

from pathlib import Path

import numpy as np
import pyarrow as pa

from quarry.datasets.records import Chunk
from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.index.keys import MAX_BITS, ChunkKey
from quarry.query.predicate import In, Prefix, Range
from quarry.store import Store


def make(tmp_path: Path, n: int = 5000) -> Chunk:
    rng = np.random.default_rng(3)
    t = pa.table({"a": rng.integers(0, 50, n), "b": [f"k{x}" for x in rng.integers(0, 30, n)],
                  "c": rng.normal(size=n)})
    import pyarrow.parquet as pq

    pq.write_table(t, tmp_path / "t.parquet")
    store = Store(tmp_path / "data")
    ingest_table(store, "t", [tmp_path / "t.parquet"], keys=[])
    return Engine(store).records("t").chunks[0]


def test_lookup_equals_a_scan_and_survives_a_round_trip(tmp_path: Path) -> None:
    chunk = make(tmp_path)
    key = ChunkKey.build(chunk, ["a", "b", "c"])
    again = ChunkKey.from_table(key.to_table())
    t = chunk.table.to_pydict()
    for k in (key, again):
        rows, used = k.lookup({"a": In("a", (3, 7)), "b": Prefix("b", "k1")})
        assert used == ("a", "b")
        want = [i for i in range(len(t["a"])) if t["a"][i] in (3, 7)
                and t["b"][i].startswith("k1")]
        assert rows.tolist() == want
    rows, used = key.lookup({"a": Range("a", 10, 12, True, False)})
    assert rows.tolist() == [i for i, v in enumerate(t["a"]) if 10 <= v < 12]
    assert key.lookup({"b": In("b", ("k1",))}) is None  # leading field wild
    rows, _ = key.lookup({"a": In("a", (999,))})
    assert len(rows) == 0


def test_fields_beyond_63_bits_are_left_out(tmp_path: Path) -> None:
    chunk = make(tmp_path)
    key = ChunkKey.build(chunk, ["c", "c", "c", "c", "c"])
    assert sum(key.bits) <= MAX_BITS and len(key.fields) < 5


def test_a_merged_key_answers_as_its_chunks_do(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    n = 600
    a = rng.integers(0, 40, n).astype(float)
    a[rng.integers(0, n, 30)] = np.nan
    t = pa.table({"a": a, "b": pa.array([None if x == 0 else f"k{x}" for x in
                                         rng.integers(0, 25, n)]),
                  "c": pa.array([None if x < 0 else int(x) for x in rng.integers(-3, 9, n)],
                                pa.int64())})
    import pyarrow.parquet as pq

    pq.write_table(t, tmp_path / "t.parquet")
    store = Store(tmp_path / "data")
    ingest_table(store, "t", [tmp_path / "t.parquet"], keys=[], chunk_rows=130)
    chunks = Engine(store).records("t").chunks
    sizes = [c.info.rows for c in chunks]
    offsets = np.cumsum([0, *sizes])
    for fields in (["a"], ["b", "c"], ["c", "a", "b"]):
        parts = [ChunkKey.build(c, fields) for c in chunks]
        merged = ChunkKey.merge(parts, sizes)
        assert merged is not None and merged.fields == tuple(fields)
        assert len(merged.comp) == n and (np.diff(merged.comp.astype(np.float64)) >= 0).all()
        queries = [{"a": In("a", (3.0, 7.0, float("nan")))},
                   {"a": Range("a", 5.0, 9.0, True, False)},
                   {"b": Prefix("b", "k1"), "c": In("c", (2,))},
                   {"b": In("b", ("k3", "k30", "zz"))},
                   {"c": In("c", (1, 2)), "a": In("a", (4.0,)),
                    "b": Prefix("b", "k")},
                   {"c": Range("c", 2, None)}]
        for q in queries:
            want = [hit for hit in (p.lookup(q) for p in parts)]
            got = merged.lookup(q)
            if want[0] is None:
                assert got is None
                continue
            assert got is not None and all(w is not None for w in want)
            assert got[1] == want[0][1]  # type: ignore[index]
            expect = np.concatenate([w[0] + off for w, off in  # type: ignore[index]
                                     zip(want, offsets, strict=False)])
            assert got[0].tolist() == expect.tolist()
        if fields == ["a"]:
            for v in (3.0, 7.5, float("nan")):
                assert merged.point(v).tolist() == merged.lookup(
                    {"a": In("a", (v,))})[0].tolist()  # type: ignore[index]


def test_a_key_that_does_not_fit_its_chunk_is_corrupt(tmp_path: Path) -> None:
    import pytest

    from quarry.errors import Corrupt

    chunk = make(tmp_path, 50)
    key = ChunkKey.build(chunk, ["a"])
    with pytest.raises(Corrupt):
        ChunkKey.merge([key], [40])
    assert ChunkKey.merge([], []) is None
