"""Records of another shape than logs (API items): no ip column, another sort key."""

from __future__ import annotations

import pyarrow as pa
import pytest

from quarry.datasets.records import make_snapshot
from quarry.datasets.records_ingest import ChunkWriter
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.store import Store


def test_items_without_ip_or_ts(store: Store) -> None:
    writer = ChunkWriter(store)
    for start in (0, 100):
        writer.write(pa.table({"id": list(range(start + 1, start + 101)),
                               "food_id": [i % 7 for i in range(100)],
                               "name": [f"n{i}" for i in range(100)]}))
    schema = pa.schema([("id", pa.int64()), ("food_id", pa.int64()), ("name", pa.string())])
    res = store.commit(make_snapshot("food", "api", schema, writer.chunks, sort_key="id"))
    meta = res.snapshot.meta
    assert meta["sort_key"] == "id" and meta["key_range"] == [1, 200]
    assert meta["time_range"] is None
    assert [p.role for p in res.snapshot.parts] == ["chunk", "chunk"]
    assert meta["chunks"][1]["zones"] == {"id": [101, 200], "food_id": [0, 6]}
    view = Engine(store).records("food")
    assert view.rows == 200 and all(c.info.index is None for c in view.chunks)
    with pytest.raises(BadRequest, match="no ip column"):
        _ = view.chunks[0].index
