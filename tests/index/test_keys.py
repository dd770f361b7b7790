"""Composite keys: build, store as a blob and read back, look up by segments."""

from pathlib import Path

import numpy as np
import pyarrow as pa

from quarry.datasets.records import Chunk
from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.index.keys import MAX_BITS, ChunkKey
from quarry.query.filters import Cond
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
        rows, used = k.lookup({"a": Cond("a", "in", (3, 7)), "b": Cond("b", "prefix", ("k1",))})
        assert used == ("a", "b")
        want = [i for i in range(len(t["a"])) if t["a"][i] in (3, 7)
                and t["b"][i].startswith("k1")]
        assert rows.tolist() == want
    rows, used = key.lookup({"a": Cond("a", "range", (), 10, 12, True, False)})
    assert rows.tolist() == [i for i, v in enumerate(t["a"]) if 10 <= v < 12]
    assert key.lookup({"b": Cond("b", "in", ("k1",))}) is None  # leading field wild
    rows, _ = key.lookup({"a": Cond("a", "in", (999,))})
    assert len(rows) == 0


def test_fields_beyond_63_bits_are_left_out(tmp_path: Path) -> None:
    chunk = make(tmp_path)
    key = ChunkKey.build(chunk, ["c", "c", "c", "c", "c"])
    assert sum(key.bits) <= MAX_BITS and len(key.fields) < 5
