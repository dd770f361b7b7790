"""Ingest of CSV, JSON lines and Parquet files as a records dataset with declared keys.

The files are read with Arrow's readers, typed (see :mod:`quarry.formats.tabular`), sorted
by the optional sort key and cut into chunks; each chunk gets its zone maps, an IP index when
it has an ``ip`` address column, and one blob per declared key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.datasets.records import IP_KEY, KIND, Chunk, ChunkInfo, make_snapshot
from quarry.datasets.records_ingest import DEFAULT_CHUNK_ROWS, ChunkWriter
from quarry.errors import BadRequest
from quarry.formats import tabular
from quarry.index import ip_index
from quarry.index.keys import ChunkKey, KeySpec
from quarry.index.zonemap import ip_bounds
from quarry.store import CommitResult, Store


def zones(table: pa.Table) -> dict[str, list[Any]]:
    """min/max of every number, timestamp and address column (strings have none)."""
    out: dict[str, list[Any]] = {}
    for f in table.schema:
        logical = tabular.logical_type(f)
        col = table.column(f.name)
        if logical == "ip":
            arr = col.combine_chunks()
            ok = pc.drop_null(arr)
            if len(ok):
                ips = np.frombuffer(ok.buffers()[1], dtype=np.uint8)[
                    ok.offset * 16:(ok.offset + len(ok)) * 16].reshape(-1, 16)
                out[f.name] = list(ip_bounds(ips))
        elif logical in ("int", "float", "timestamp"):
            mm = pc.min_max(col.cast(pa.int64()) if logical == "timestamp" else col)
            if mm["min"].is_valid:
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                if logical == "float":
                    if np.isnan(lo) or np.isnan(hi):
                        continue  # only NaN: no order to prune by
                    # JSON has no inf: an infinite end is written as null, "unbounded".
                    lo = lo if np.isfinite(lo) else None
                    hi = hi if np.isfinite(hi) else None
                out[f.name] = [lo, hi]
    return out


def check_keys(keys: Sequence[KeySpec], types: Mapping[str, str]) -> None:
    for k in keys:
        unknown = [f for f in k.fields if f not in types]
        if not k.fields or unknown or len(set(k.fields)) != len(k.fields):
            raise BadRequest(f"key {k.name!r} must name distinct fields of the table "
                             f"({', '.join(types)})")


def write_chunks(store: Store, table: pa.Table, keys: Sequence[KeySpec],
                 chunk_rows: int, first_position: int = 0) -> list[ChunkInfo]:
    writer = ChunkWriter(store)
    has_ip = IP_KEY in table.column_names and tabular.logical_type(
        table.schema.field(IP_KEY)) == "ip" and table.column(IP_KEY).null_count == 0
    out: list[ChunkInfo] = []
    for start in range(0, table.num_rows, chunk_rows):
        part = tabular.normalise_chunk(table.slice(start, chunk_rows).combine_chunks())
        data_id, data_size = writer._put(part)
        index_id, index_size, exact = "", 0, False
        if has_ip:
            arr = part.column(IP_KEY).chunk(0)
            ips = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[
                arr.offset * 16:(arr.offset + len(arr)) * 16].reshape(-1, 16)
            comp, exact = ip_index.build(ips)
            index_id, index_size = writer._put(pa.table({"key_row": pa.array(comp, pa.uint64())}))
        info = ChunkInfo(data_id, data_size, index_id, index_size, part.num_rows, zones(part),
                         exact)
        blobs: dict[str, list[Any]] = {}
        if keys:
            chunk = Chunk(store, info, first_position + len(out))
            for k in keys:
                blob, size = writer._put(ChunkKey.build(chunk, k.fields).to_table())
                blobs[k.name] = [blob, size]
        out.append(ChunkInfo(data_id, data_size, index_id, index_size, part.num_rows,
                             info.zones, exact, blobs))
    return out


def ingest_table(store: Store, name: str, paths: Sequence[Path], *, fmt: str = "auto",
                 types: Mapping[str, str] | None = None, sort_key: str | None = None,
                 keys: Sequence[KeySpec] = (), chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 append: bool = False, message: str = "") -> CommitResult:
    """Read ``paths`` into a new version of records dataset ``name``.

    With ``append`` the new version keeps the current version's chunks (and its schema, sort
    key and declared keys, which the new rows must fit).
    """
    from quarry.store.refs import check_dataset_name

    check_dataset_name(name)
    if not paths:
        raise BadRequest("no input files")
    if not 1 <= chunk_rows < ip_index.MAX_ROWS:
        raise BadRequest(f"chunk rows must be between 1 and 2^32-1, got {chunk_rows}")
    base_version = store.head(name) if append else None
    base_chunks: list[ChunkInfo] = []
    schema: pa.Schema | None = None
    if base_version is not None:
        base = store.snapshot(base_version)
        if base.kind != KIND:
            raise BadRequest(f"cannot append to {name}: it is a {base.kind} dataset")
        base_chunks = [ChunkInfo.from_json(c) for c in base.meta.get("chunks", [])]
        schema = pa.schema([tabular.field(f["name"], f["type"]) for f in base.meta["schema"]])
        sort_key = base.meta.get("sort_key")
        keys = [KeySpec(tuple(v)) for v in base.meta.get("keys", {}).values()]
    parts = []
    for p in paths:
        t = tabular.normalise(tabular.read_file(Path(p), fmt), types, schema)
        schema = schema or t.schema
        parts.append(t)
    assert schema is not None
    table = pa.concat_tables(parts)
    col_types = {f.name: tabular.logical_type(f) for f in table.schema}
    if sort_key is not None:
        if sort_key not in col_types:
            raise BadRequest(f"sort key {sort_key!r} is not a column ({', '.join(col_types)})")
        # Arrow's sort is stable: equal keys keep their input order.
        table = table.take(pc.sort_indices(table, [(sort_key, "ascending")]))
    check_keys(keys, col_types)
    chunks = base_chunks + write_chunks(store, table, keys, chunk_rows, len(base_chunks))
    extra = {"keys": {k.name: list(k.fields) for k in keys},
             "sources": [Path(p).name for p in paths][:20]}
    snap = make_snapshot(name, fmt if fmt != "auto" else tabular.detect_format(Path(paths[0])),
                         tabular.schema_of(table), chunks, message=message, extra=extra,
                         sort_key=sort_key)
    if append:
        return store.commit(snap, expected_parent=base_version)
    return store.commit(snap)
