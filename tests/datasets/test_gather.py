"""Rows fetched by version-wide number equal the per-chunk Arrow takes they replace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quarry.datasets import gather
from quarry.datasets.gather import VersionColumns, _Span
from quarry.datasets.records import RecordsView
from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.query.executor import plain
from quarry.store import Store


def make_view(tmp_path: Path, n: int = 300, chunk_rows: int = 70) -> RecordsView:
    rng = np.random.default_rng(4)
    strs = [None if x == 0 else f"s{x}é" * (x % 3) for x in rng.integers(0, 9, n)]
    strs[:chunk_rows] = [None] * chunk_rows  # a chunk whose dictionary is empty
    t = pa.table({
        "i": pa.array([None if x < 0 else int(x) for x in rng.integers(-2, 50, n)],
                      pa.int64()),
        "f": rng.normal(size=n),
        "s": pa.array(strs, pa.string()),
        "t": pa.array(rng.integers(1_600_000_000, 1_600_100_000, n), pa.int64()),
        "ip": pa.array([f"10.0.{x % 7}.{x}" for x in rng.integers(0, 250, n)]),
    })
    pq.write_table(t, tmp_path / "t.parquet")
    store = Store(tmp_path / "data")
    ingest_table(store, "t", [tmp_path / "t.parquet"],
                 types={"t": "timestamp", "ip": "ip", "s": "string"}, chunk_rows=chunk_rows)
    return Engine(store, refresh_interval=0).records("t")


def reference(view: RecordsView, rows: np.ndarray, fields: list[str] | None) -> pa.Table:
    offsets = np.cumsum([0] + [c.info.rows for c in view.chunks])
    parts = []
    for i, c in enumerate(view.chunks):
        local = rows[(rows >= offsets[i]) & (rows < offsets[i + 1])] - offsets[i]
        t = c.table if fields is None else c.table.select(fields)
        parts.append(plain(t.take(pa.array(local, pa.int64()))))
    return pa.concat_tables(parts)


@pytest.mark.parametrize("fallback", [False, True])
def test_take_equals_per_chunk_takes(tmp_path: Path, fallback: bool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if fallback:  # every fixed-width column the per-chunk Arrow way
        monkeypatch.setattr(gather, "_fixed_width", lambda t: 0)
    view = make_view(tmp_path)
    cols = VersionColumns(view)
    assert cols.uniform and cols.rows == 300 and len(view.chunks) == 5
    rng = np.random.default_rng(9)
    cases = [np.arange(0), np.arange(300), np.array([0]), np.array([299]),
             np.arange(0, 70), np.array([69, 70, 139, 140])]
    cases += [np.unique(rng.integers(0, 300, k)) for k in (1, 3, 20, 64, 65, 200)]
    for fields in (None, ["s"], ["ip", "i"], ["t", "f", "s"]):
        for rows in cases:
            got = cols.take(rows.astype(np.int64), None if fields is None else tuple(fields))
            want = reference(view, rows, fields)
            assert got.schema.equals(want.schema, check_metadata=True)
            assert got.equals(want), (fields, rows)


def test_rows_outside_the_view_are_refused(tmp_path: Path) -> None:
    cols = VersionColumns(make_view(tmp_path))
    for rows in (np.array([300]), np.array([-1, 3])):
        with pytest.raises(IndexError):
            cols.take(rows, None)


def test_cursor_positions_round_trip(tmp_path: Path) -> None:
    cols = VersionColumns(make_view(tmp_path))
    assert cols.locate(0) == (0, 0) and cols.locate(75) == (1, 5)
    assert cols.start_after(1, 5) == 76 and cols.start_after(0, 69) == 70


def test_spans_refuse_misaligned_or_mixed_buffers() -> None:
    raw = np.zeros(33, np.uint8)
    a = np.frombuffer(raw.data, np.uint64, 2, offset=0)
    b = np.frombuffer(raw.data, np.uint64, 2, offset=1)  # one byte off
    with pytest.raises(ValueError):
        _Span([[a, b]], np.zeros(2, np.int64))
    with pytest.raises(ValueError):
        _Span([[a], [a.view(np.int64)]], np.zeros(1, np.int64))
    span = _Span([[a, np.arange(3, dtype=np.uint64)]], np.array([0, 2]))
    got = span.take(np.array([1, 1]), np.array([2, 4]))  # rows 2 and 4 are chunk 1's 0, 2
    assert got.tolist() == [[0, 2]]
