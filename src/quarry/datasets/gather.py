"""Rows of a records view fetched by version-wide row number, as one Arrow table.

A keyed lookup that returns a few rows spread over several chunks used to cost one Arrow
``take`` per chunk, a concatenation and a dictionary decode: hundreds of microseconds of
per-call overhead for a handful of rows. Here rows are numbered across the view (chunk ``i``'s
row ``r`` is ``offsets[i] + r``, so ascending numbers are (chunk position, row) order) and a
column's values are gathered with *one* numpy indexing for all chunks: a *span* is a numpy
view from the lowest to the highest address of the column's per-chunk buffers (memory-mapped
chunks, at aligned offsets), and row ``r`` of chunk ``i`` is element ``delta[i] + r`` of it.
Only those elements are ever read (rows are checked against the chunk sizes), so the gaps
between the buffers, which need not be mapped, are never touched. Strings (one dictionary per
chunk) are gathered as chunk codes, mapped into one version-wide dictionary, and assembled as
offsets and bytes. Other types (booleans, plain strings) take the per-chunk Arrow way.

Columns are prepared on first use and cached per view (the view's chunks are immutable).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import as_strided

from quarry.datasets.records import RecordsView

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
SMALL = 64  # rows up to which strings are made from Python objects (see VersionColumns._build)


def _fixed_width(t: pa.DataType) -> int:
    """Bytes per value of a fixed-width type gathered as raw bytes; 0 for any other type."""
    if pa.types.is_fixed_size_binary(t):
        return int(t.byte_width)
    if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t)
            or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_duration(t)):
        return int(t.bit_width) // 8
    return 0


def _raw(arr: pa.Array, width: int) -> np.ndarray:
    """The values buffer of ``arr``, one numpy item per value (zero copy)."""
    dt = np.dtype(_UINT[width]) if width in _UINT else np.dtype(f"V{width}")
    buf = arr.buffers()[1]
    data = np.frombuffer(buf, dtype=dt) if buf is not None else np.zeros(0, dt)
    return data[arr.offset:arr.offset + len(arr)]


class _Span:
    """Same-typed arrays (columns x chunks) as one indexable numpy view: element
    ``delta[k, i] + r`` is ``parts[k][i][r]``."""

    def __init__(self, parts: Sequence[Sequence[np.ndarray]], firsts: np.ndarray) -> None:
        self.parts = [list(p) for p in parts]  # kept: the span does not own their memory
        flat = [a for p in parts for a in p]
        w = flat[0].itemsize
        if any(a.dtype != flat[0].dtype or not len(a) for a in flat):
            raise ValueError("mixed or empty buffers")
        addr = [a.ctypes.data for a in flat]
        low = min(range(len(flat)), key=lambda i: addr[i])
        base = addr[low]
        if any((a - base) % w for a in addr):
            raise ValueError("misaligned buffers")
        end = max(a + p.nbytes for a, p in zip(addr, flat, strict=True))
        self.delta = np.array([(a - base) // w for a in addr], dtype=np.int64).reshape(
            len(parts), -1)
        self.values = as_strided(flat[low], shape=((end - base) // w,), strides=(w,),
                                 writeable=False)
        self.at = self.delta - firsts[None, :]

    def take(self, chunk_of: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``(columns, rows)``: each column's values at version-wide ``rows`` of chunks
        ``chunk_of``, in one indexing (``at`` folds in the chunks' first row numbers)."""
        return self.values[self.at.take(chunk_of, axis=1) + rows]  # type: ignore[no-any-return]


@dataclass
class _Column:
    field: pa.Field  # as output: dictionaries decoded, metadata kept
    kind: str  # fixed, dict or arrow
    arrays: list[pa.Array]  # per chunk (also what keeps the spans' memory alive)
    raw: list[np.ndarray] | None = None  # per chunk: fixed: values; dict: codes
    valid: list[np.ndarray] | None = None  # per chunk validity as uint8; None: no nulls
    # dict: at chunk code + remap_at[chunk], where the value's text starts in ``data`` (the
    # version dictionary's bytes) and its length
    starts: np.ndarray | None = None
    remap_at: np.ndarray | None = None
    lens: np.ndarray | None = None
    data: np.ndarray | None = None
    text: np.ndarray | None = None  # the same values as Python strings (object array)


@dataclass
class _Plan:
    """How to gather one projection: its columns, and spans grouping them by storage type."""

    schema: pa.Schema
    cols: list[_Column]
    values: list[tuple[_Span, list[int]]]  # span, and which of ``cols`` it holds
    valid: tuple[_Span, list[int]] | None


def _plan(schema: pa.Schema, cols: list[_Column], firsts: np.ndarray) -> _Plan:
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cols):
        if c.raw is not None:
            groups.setdefault(c.raw[0].dtype.str, []).append(i)
    spans = []
    for members in groups.values():
        try:
            spans.append((_Span([cols[i].raw for i in members], firsts),  # type: ignore[misc]
                          members))
        except ValueError:
            for i in members:  # gathered per chunk by Arrow instead
                cols[i] = _Column(cols[i].field, "arrow", cols[i].arrays)
    nullable = [i for i, c in enumerate(cols) if c.kind != "arrow" and c.valid is not None]
    valid = None
    if nullable:
        try:
            valid = (_Span([cols[i].valid for i in nullable], firsts),  # type: ignore[misc]
                     nullable)
        except ValueError:
            for i in nullable:
                cols[i] = _Column(cols[i].field, "arrow", cols[i].arrays)
            spans = [(s, m) for s, m in spans if not set(m) & set(nullable)]
    return _Plan(schema, cols, spans, valid)


class VersionColumns:
    """One view's columns, addressable by version-wide row number."""

    def __init__(self, view: RecordsView) -> None:
        self.chunks = list(view.chunks)
        self.positions = tuple(c.position for c in self.chunks)
        self.offsets = np.cumsum([0] + [c.info.rows for c in self.chunks], dtype=np.int64)
        self.rows = int(self.offsets[-1])
        self._plans: dict[tuple[str, ...] | None, _Plan] = {}
        self._lock = threading.Lock()
        first = self.chunks[0].table.schema if self.chunks else pa.schema([])
        # Chunks written by different ingests may differ in storage types: no shortcut then.
        self.uniform = all(c.table.schema.equals(first) for c in self.chunks)
        self.schema = first

    def locate(self, row: int) -> tuple[int, int]:
        """(chunk position, row) of one version-wide row number."""
        i = int(np.searchsorted(self.offsets, row, "right")) - 1
        return self.positions[i], int(row - self.offsets[i])

    def start_after(self, chunk: int, row: int) -> int:
        """The first version-wide row number after (chunk position, row)."""
        i = int(np.searchsorted(np.asarray(self.positions), chunk, "left"))
        if i < len(self.positions) and self.positions[i] == chunk:
            return int(self.offsets[i]) + row + 1
        return int(self.offsets[i])

    def _column(self, name: str) -> _Column:
        f = self.schema.field(name)
        arrays = []
        for c in self.chunks:
            col = c.table.column(name)
            arrays.append(col.chunk(0) if col.num_chunks == 1 else col.combine_chunks())
        valid = None
        if any(a.null_count for a in arrays):
            valid = [np.asarray(a.is_valid(), dtype=np.uint8) for a in arrays]
        width = _fixed_width(f.type)
        if width:
            return _Column(f, "fixed", arrays, [_raw(a, width) for a in arrays], valid)
        if (pa.types.is_dictionary(f.type) and pa.types.is_string(f.type.value_type)
                and pa.types.is_integer(f.type.index_type)):
            codes = [_raw(a.indices, f.type.index_type.bit_width // 8) for a in arrays]
            # One sorted dictionary for the version; each chunk's codes map into it.
            merged = pc.unique(pa.chunked_array([a.dictionary for a in arrays],
                                                f.type.value_type))
            merged = merged.take(pc.sort_indices(merged))
            remaps = [np.asarray(pc.index_in(a.dictionary, value_set=merged), dtype=np.int32)
                      for a in arrays]
            # One extra entry (empty text) stands for a chunk whose dictionary is empty.
            remaps = [r if len(r) else np.full(1, len(merged), np.int32) for r in remaps]
            at = np.cumsum([0] + [len(r) for r in remaps[:-1]], dtype=np.int64)
            offsets = np.frombuffer(merged.buffers()[1], dtype=np.int32)[
                merged.offset:merged.offset + len(merged) + 1].astype(np.int64)
            offsets = np.append(offsets, offsets[-1])
            data = np.frombuffer(merged.buffers()[2] or b"", dtype=np.uint8)
            remap = np.concatenate(remaps)
            text = np.asarray(merged.to_numpy(zero_copy_only=False), dtype=object)
            return _Column(f.with_type(f.type.value_type), "dict", arrays, codes, valid,
                           offsets[:-1][remap], at, np.diff(offsets)[remap], data,
                           np.append(text, "")[remap])
        plain = f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
        return _Column(plain, "arrow", arrays)

    def _plan(self, fields: tuple[str, ...] | None) -> _Plan:
        hit = self._plans.get(fields)
        if hit is None:
            with self._lock:
                hit = self._plans.get(fields)
                if hit is None:
                    names = self.schema.names if fields is None else list(fields)
                    cols = [self._column(n) for n in names]
                    hit = _plan(pa.schema([c.field for c in cols],
                                          metadata=self.schema.metadata), cols,
                                self.offsets[:-1])
                    self._plans[fields] = hit
        return hit

    def take(self, rows: np.ndarray, fields: tuple[str, ...] | None,
             ordered: bool = True) -> pa.Table:
        """The rows at version-wide numbers ``rows`` (ascending unless not ``ordered``),
        columns ``fields`` (None: all), as one table with the chunks' schema (strings
        decoded)."""
        plan = self._plan(fields)
        n = len(rows)
        if n:
            lo, hi = (rows[0], rows[-1]) if ordered else (rows.min(), rows.max())
            if not (lo >= 0 and hi < self.rows):
                raise IndexError(f"row numbers out of range: {lo}..{hi} of {self.rows}")
        if not ordered and any(c.kind == "arrow" for c in plan.cols):
            # Arrow's per-chunk takes want each chunk's rows together: take them in order.
            by_row = np.argsort(rows, kind="stable")
            back = np.empty_like(by_row)
            back[by_row] = np.arange(n)
            return self.take(rows[by_row], fields).take(pa.array(back))
        chunk_of = self.offsets.searchsorted(rows, "right") - 1
        raw: list[np.ndarray | None] = [None] * len(plan.cols)
        ok: list[np.ndarray | None] = [None] * len(plan.cols)
        for span, members in plan.values:
            got = span.take(chunk_of, rows)
            for j, i in enumerate(members):
                raw[i] = got[j]
        if plan.valid is not None:
            got = plan.valid[0].take(chunk_of, rows).view(bool)
            for j, i in enumerate(plan.valid[1]):
                ok[i] = got[j]
        arrays = []
        for c, v, valid in zip(plan.cols, raw, ok, strict=True):
            if c.kind == "fixed" and valid is None:  # the common case, inline
                arrays.append(pa.Array.from_buffers(c.field.type, n, [None, pa.py_buffer(v)],
                                                    null_count=0))
            else:
                arrays.append(self._build(c, v, valid, rows, chunk_of))
        return pa.Table.from_arrays(arrays, schema=plan.schema)

    def _build(self, col: _Column, v: np.ndarray | None, ok: np.ndarray | None,
               rows: np.ndarray, chunk_of: np.ndarray) -> pa.Array:
        n = len(rows)
        if col.kind == "arrow" or v is None:
            local = rows - self.offsets[chunk_of]
            cuts = rows.searchsorted(self.offsets)
            taken = [a.take(pa.array(local[cuts[i]:cuts[i + 1]]))
                     for i, a in enumerate(col.arrays) if cuts[i + 1] > cuts[i]]
            if not taken:
                return pa.array([], col.field.type)
            out = pa.concat_arrays(taken) if len(taken) > 1 else taken[0]
            return out.cast(col.field.type) if out.type != col.field.type else out
        validity = None
        null = None  # the null rows' mask, when there are any
        if ok is not None and not ok.all():
            null = ~ok
            validity = pa.py_buffer(np.packbits(ok, bitorder="little"))
        nulls = 0 if null is None else int(np.count_nonzero(null))
        if col.kind == "fixed":
            return pa.Array.from_buffers(col.field.type, n, [validity, pa.py_buffer(v)],
                                         null_count=nulls)
        assert col.starts is not None and col.remap_at is not None
        assert col.lens is not None and col.data is not None
        at = v + col.remap_at[chunk_of]
        if null is not None:
            at[null] = 0  # a null's code is unspecified
        if n <= SMALL and col.text is not None:
            # A few values: Arrow converting Python strings costs less than assembling bytes.
            got = col.text[at]
            if null is not None:
                got[null] = None
            return pa.array(got, col.field.type)
        starts = col.starts[at]
        lens = col.lens[at]
        if null is not None:
            lens[null] = 0
        out = np.empty(n + 1, dtype=np.int32)
        out[0] = 0
        np.cumsum(lens, out=out[1:])
        total = int(out[-1])
        if n == 1:
            data = col.data[int(starts[0]):int(starts[0]) + total]
        else:
            data = col.data[np.repeat(starts - out[:-1], lens) + np.arange(total)]
        return pa.Array.from_buffers(col.field.type, n,
                                     [validity, pa.py_buffer(out), pa.py_buffer(data)],
                                     null_count=nulls)


_CACHE: weakref.WeakKeyDictionary[RecordsView, VersionColumns] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def version_columns(view: RecordsView) -> VersionColumns:
    hit = _CACHE.get(view)
    if hit is None:
        with _CACHE_LOCK:
            hit = _CACHE.get(view)
            if hit is None:
                hit = VersionColumns(view)
                _CACHE[view] = hit
    return hit
