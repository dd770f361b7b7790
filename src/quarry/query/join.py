"""Keyed join (batch lookup): probe rows against a records view, chunk-parallel.

Per chunk: the probe values become the key's codes (a hash lookup in each field's domain), each
probe one binary chop in the sorted composite, then the rows are fetched by position and the
residual filter applied. With no key whose leading fields are the join fields, each chunk is
keyed on the fly (a sort), and the shape is recorded so the key builder can make a real key.
Matches come in (probe, chunk, row) order; ``left`` keeps unmatched probes (dataset columns
null), ``anti`` returns only the unmatched probes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from quarry.datasets.columns import column
from quarry.datasets.gather import version_columns
from quarry.datasets.records import Chunk, RecordsView
from quarry.errors import BadRequest
from quarry.formats import tabular
from quarry.index.keys import ChunkKey, KeySpec
from quarry.index.keyset import Key
from quarry.query.executor import Stats, plain, rows_mask
from quarry.query.predicate import AlwaysTrue, Predicate

HOWS = ("inner", "left", "anti")
MAX_PROBES = 10_000_000
PROBE = "_probe"
PARALLEL_PROBES = 20_000  # probes per thread, at least, on the version-wide key


@dataclass(frozen=True)
class JoinSpec:
    on: tuple[tuple[str, str], ...]  # (probe column, dataset field)
    how: str = "inner"
    where: Predicate = field(default_factory=AlwaysTrue)  # bound; filters the matched rows
    fields: tuple[str, ...] | None = None


def read_probes(raw: bytes, content_type: str) -> pa.Table:
    """Probe rows from JSON (a list of objects, or {"rows": [...]}), CSV or Arrow IPC."""
    ct = content_type.split(";")[0].strip().lower()
    try:
        if ct in ("application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file"):
            reader = pa.ipc.open_stream(raw) if ct.endswith("stream") else pa.ipc.open_file(raw)
            return reader.read_all()
        if ct in ("text/csv", "application/csv"):
            import pyarrow.csv as pacsv

            return pacsv.read_csv(io.BytesIO(raw))
    except (pa.ArrowInvalid, OSError) as e:
        raise BadRequest(f"cannot read the probe rows as {ct}: {e}") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"probe rows are not valid JSON: {e}") from None
    rows = body.get("rows") if isinstance(body, dict) else body
    return probes_from_rows(rows)


def probes_from_rows(rows: Any) -> pa.Table:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest("probe rows must be a list of objects")
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise BadRequest(f"probe rows do not form a table: {e}") from None


def _comparable(arr: pa.Array, logical: str) -> Any:
    """Probe values in the form key domains hold (see ``ChunkKey.codes_of``)."""
    if logical == "string":
        return arr
    if logical == "ip":
        vals = np.frombuffer(arr.buffers()[1], dtype="S16")[arr.offset:arr.offset + len(arr)]
        return vals
    if logical == "timestamp":
        return np.asarray(arr.cast(pa.int64()).fill_null(0))
    return np.asarray(arr.fill_null(0))


class _Prepared:
    def __init__(self, view: RecordsView, probes: pa.Table, spec: JoinSpec) -> None:
        if len(probes) > MAX_PROBES:
            raise BadRequest(f"{len(probes)} probe rows; at most {MAX_PROBES} a join")
        self.values: dict[str, Any] = {}
        self.valid = np.ones(len(probes), dtype=bool)
        self.order: np.ndarray | None = None
        for pcol, dfield in spec.on:
            if pcol not in probes.column_names:
                raise BadRequest(f"the probe rows have no column {pcol!r}")
            if dfield not in view.types:
                raise BadRequest(f"unknown field {dfield!r}: the fields are "
                                 f"{', '.join(view.types)}", field=dfield)
            logical = view.types[dfield]
            arr = tabular._convert(pcol, probes.column(pcol), logical)
            if arr.null_count:
                self.valid &= np.asarray(arr.is_valid(), dtype=bool)
            self.values[dfield] = _comparable(arr, logical)


    def sort(self, field: str) -> None:
        """Order the probes by ``field`` (numbers and addresses): binary searches with sorted
        needles walk the key's memory in order instead of missing the cache each time."""
        v = self.values[field]
        self.order = None if isinstance(v, pa.Array) else np.argsort(v, kind="stable")
        if self.order is not None:
            self.values = {f: x.take(pa.array(self.order)) if isinstance(x, pa.Array)
                           else x[self.order] for f, x in self.values.items()}
            self.valid = self.valid[self.order]


def _chunk_pairs(chunk: Chunk, ck: ChunkKey, prep: _Prepared, spec: JoinSpec,
                 fields: Sequence[str], types: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(probe index, row) of every match in one chunk."""
    n = len(prep.valid)
    k = 0
    while k < min(len(ck.fields), len(fields)) and ck.fields[k] in fields:
        k += 1
    codes = [np.where(prep.valid, ck.codes_of(i, prep.values[f]), -1)
             for i, f in enumerate(ck.fields[:k])]
    a, z = ck.probe_ranges(codes)
    lens = z - a
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    probe = np.repeat(np.arange(n, dtype=np.int64), lens)
    starts = np.cumsum(lens) - lens
    pos = np.arange(total, dtype=np.int64) + np.repeat(a - starts, lens)
    rows = ck.rows[pos].astype(np.int64)
    for f in fields:  # join fields the chunk's key left out (it ran out of bits)
        if f not in ck.fields[:k]:
            col = column(chunk, f)
            v = prep.values[f]
            want = np.asarray(v.to_numpy(zero_copy_only=False)) if isinstance(v, pa.Array) else v
            have = col.values[rows] if col.dictionary is None else np.asarray(
                col.dictionary.to_numpy(zero_copy_only=False))[col.values[rows]]
            keep = have == want[probe]
            probe, rows = probe[keep], rows[keep]
    if not isinstance(spec.where, AlwaysTrue) and len(rows):
        keep = rows_mask(chunk, spec.where, types, rows)
        probe, rows = probe[keep], rows[keep]
    if prep.order is not None:
        probe = prep.order[probe]  # back to the caller's probe numbering
    return probe, rows


def join(view: RecordsView, probes: pa.Table, spec: JoinSpec, keys: Sequence[Key],
         threads: int | None = None) -> tuple[pa.Table, Stats]:
    if spec.how not in HOWS:
        raise BadRequest(f"how must be one of {', '.join(HOWS)}")
    if not spec.on:
        raise BadRequest("give the join fields: on")
    prep = _Prepared(view, probes, spec)
    fields = [d for _, d in spec.on]
    key = next((k for k in keys if set(k.spec.fields[:len(fields)]) == set(fields)), None)
    stats = Stats(chunks=len(view.chunks))
    if key is not None:
        key.uses += 1
        stats.key, stats.source = key.spec.name, key.source
    order = key.spec.fields[:len(fields)] if key is not None else tuple(fields)
    prep.sort(order[0])
    out_fields = tuple(spec.fields or view.types)
    matched = np.zeros(len(probes), dtype=bool)
    whole = _whole_pairs(view, key, prep, spec, order, threads)
    template = _template(view, out_fields)
    if whole is not None:
        stats.path = "version key"
        p, r = whole
        stats.rows_examined = len(r)
        matched[p] = True
        if spec.how == "anti":
            return _anti(probes, matched, stats)
        # (probe, row) order: rows are numbered across chunks, so (probe, chunk, row). One
        # combined number sorts faster than lexsort's two passes.
        final = np.argsort(p * max(1, version_columns(view).rows) + r)
        p, r = p[final], r[final]
        table = version_columns(view).take(r, out_fields, ordered=False).append_column(
            PROBE, pa.array(p, pa.int64())) if len(r) else template
    else:
        table = _per_chunk(view, key, prep, spec, order, matched, stats, threads, template)
        if spec.how == "anti":
            return _anti(probes, matched, stats)
    stats.rows_matched = len(table)
    if spec.how == "left":
        missing = np.flatnonzero(~matched)
        if len(missing):
            nulls = pa.table({f.name: pa.nulls(len(missing), f.type) for f in template.schema
                              if f.name != PROBE}).append_column(PROBE, pa.array(missing))
            table = pa.concat_tables([table, nulls.cast(table.schema)])
            table = table.take(pa.array(np.argsort(
                np.asarray(table.column(PROBE)), kind="stable")))
    extra = [c for c in probes.column_names if c not in table.column_names]
    if extra:
        idx = pa.array(np.asarray(table.column(PROBE)))
        for c in extra:
            table = table.append_column(c, probes.column(c).take(idx))
    return table, stats


def _whole_pairs(view: RecordsView, key: Key | None, prep: _Prepared, spec: JoinSpec,
                 order: Sequence[str],
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(probe, version-wide row) of every match, by one search of the version-wide key per
    probe instead of one per chunk; None when there is no such key for these fields (or a
    residual filter, which reads chunk columns: the per-chunk way does that)."""
    if key is None or not isinstance(spec.where, AlwaysTrue) or not view.chunks:
        return None
    cols = version_columns(view)
    vk = key.whole(view, cols.positions) if cols.uniform else None
    if vk is None or tuple(vk.fields[:len(order)]) != tuple(order):
        return None

    def part(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        codes = [np.where(prep.valid[lo:hi], vk.codes_of(i, prep.values[f][lo:hi]), -1)
                 for i, f in enumerate(order)]
        a, z = vk.probe_ranges(codes)
        lens = z - a
        total = int(lens.sum())
        probe = np.repeat(np.arange(lo, hi, dtype=np.int64), lens)
        pos = np.arange(total, dtype=np.int64) + np.repeat(a - (np.cumsum(lens) - lens), lens)
        return probe, vk.rows[pos].astype(np.int64)

    # The searches are binary chops in memory far larger than the caches, and numpy lets go
    # of the GIL in them: split the (sorted) probes between threads.
    n = len(prep.valid)
    k = max(1, min(threads or os.cpu_count() or 2, n // PARALLEL_PROBES))
    cuts = [n * j // k for j in range(k + 1)]
    if k == 1:
        probe, rows = part(0, n)
    else:
        with ThreadPoolExecutor(k) as pool:
            done = list(pool.map(lambda j: part(cuts[j], cuts[j + 1]), range(k)))
        probe = np.concatenate([d[0] for d in done])
        rows = np.concatenate([d[1] for d in done])
    if prep.order is not None:
        probe = prep.order[probe]
    return probe, rows


def _per_chunk(view: RecordsView, key: Key | None, prep: _Prepared, spec: JoinSpec,
               order: Sequence[str], matched: np.ndarray, stats: Stats, threads: int | None,
               template: pa.Table) -> pa.Table:
    """The matches in (probe, chunk, row) order, chunk by chunk in parallel threads (each
    keyed on the fly without a key)."""

    def one(chunk: Chunk) -> tuple[int, np.ndarray, np.ndarray]:
        ck = key.chunk_key(chunk) if key is not None else None
        if ck is None:
            ck = ChunkKey.build(chunk, order)
        p, r = _chunk_pairs(chunk, ck, prep, spec, order, view.types)
        return chunk.position, p, r

    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 2)) as pool:
        results = list(pool.map(one, view.chunks))
    stats.rows_examined = sum(len(r) for _, _, r in results)
    out_fields = [f.name for f in template.schema if f.name != PROBE]
    parts: list[pa.Table] = []
    keys_p = []
    by_pos = {c.position: c for c in view.chunks}
    for pos, p, r in sorted(results, key=lambda x: x[0]):
        if not len(p):
            continue
        matched[p] = True
        if spec.how == "anti":
            continue
        # Fetch in row order (memory order); the stable sort by probe below then leaves
        # each probe's matches in (chunk, row) order.
        by_row = np.argsort(r, kind="stable")
        p, r = p[by_row], r[by_row]
        t = plain(by_pos[pos].table.select(out_fields).take(r))
        parts.append(t.append_column(PROBE, pa.array(p, pa.int64())))
        keys_p.append(p)
    table = pa.concat_tables(parts) if parts else template
    if parts:
        table = table.take(np.argsort(np.concatenate(keys_p), kind="stable"))
    return table


def _template(view: RecordsView, out_fields: Sequence[str]) -> pa.Table:
    if not view.chunks:
        return pa.table({PROBE: pa.array([], pa.int64())})
    return plain(view.chunks[0].table.select(list(out_fields)).slice(0, 0)).append_column(
        PROBE, pa.array([], pa.int64()))


def _anti(probes: pa.Table, matched: np.ndarray, stats: Stats) -> tuple[pa.Table, Stats]:
    out = probes.filter(pa.array(~matched))
    stats.rows_matched = len(out)
    return out.append_column(PROBE, pa.array(np.flatnonzero(~matched))), stats


def parse_on(raw: Any, probe_columns: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``"a,b"``, ``["a", "b"]`` or ``{"probe_col": "field"}``; default: shared names."""
    if raw is None:
        raise BadRequest("give the join fields: on")
    if isinstance(raw, str):
        raw = [x.strip() for x in raw.split(",") if x.strip()]
    if isinstance(raw, Mapping):
        return tuple((str(k), str(v)) for k, v in raw.items())
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return tuple((x, x) for x in raw)
    raise BadRequest("on must be a list of field names or an object probe column -> field")


def spec_key(spec: JoinSpec) -> KeySpec:
    return KeySpec(tuple(d for _, d in spec.on))
