"""Per-chunk partial statistics and their merges: every per-row step is a numpy or Arrow kernel.

Each partial is a frozen value: ``merge`` combines two (associative and commutative, so
chunks can be reduced in any order, on any worker) and ``finalize`` turns one into the
answer. Memory is bounded by what a statistic must keep, never by the rows: value counts
hold one count per distinct value (a dense ``bincount`` array when integer values span a
range no wider than the rows counted, so it costs at most the column's own size), exact
distinct counts hold the distinct values, HyperLogLog 16 KiB, the others a few numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.errors import BadRequest
from quarry.formats.ipaddr import format_ip
from quarry.stats import hll
from quarry.stats.request import Aggregate

# A dense count array may always be this long, whatever the rows (8 MiB).
DENSE_FLOOR = 1 << 20
LISTED_TIES = 20


def _single(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def _is_int(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t))


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        # 16-byte values are addresses (the records' ip column); other bytes as text.
        return format_ip(v) if len(v) == 16 else v.decode("utf-8", "replace")
    return v


# -- value counts (top_k, group_count, histogram) ------------------------------------------
@dataclass(frozen=True)
class ValueCounts:
    """Counts per value. Integers: ``dense`` counts of ``base + i``, or sorted unique
    ``values`` with ``counts``; other types: an Arrow array of unique values."""

    counts: np.ndarray  # int64
    values: np.ndarray | pa.Array | None = None  # None when dense
    base: int = 0
    nulls: int = 0

    @property
    def dense(self) -> bool:
        return self.values is None

    @property
    def rows(self) -> int:
        return int(self.counts.sum()) + self.nulls

    @classmethod
    def empty(cls) -> ValueCounts:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def of(cls, col: pa.ChunkedArray | pa.Array,
           bounds: tuple[int, int] | None = None) -> ValueCounts:
        arr = _single(col)
        nulls = arr.null_count
        if nulls:
            arr = arr.drop_null()
        if len(arr) == 0:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), nulls=nulls)
        if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
            arr = arr.cast(pa.int64())
        if _is_int(arr.type):
            x = np.asarray(arr.to_numpy(zero_copy_only=False))
            if bounds is None:
                mm = pc.min_max(arr)
                bounds = (int(mm["min"].as_py()), int(mm["max"].as_py()))
            lo, hi = bounds
            width = hi - lo + 1
            if width <= max(2 * len(x), DENSE_FLOOR):
                # bincount takes non-negative values as they are (no copy) when 0 <= lo.
                if lo >= 0 and hi < max(2 * len(x), DENSE_FLOOR):
                    return cls(np.bincount(x, minlength=hi + 1)[lo:], None, lo, nulls)
                return cls(np.bincount(x - lo, minlength=width), None, lo, nulls)
            values, counts = np.unique(x, return_counts=True)
            return cls(counts.astype(np.int64), values.astype(np.int64), 0, nulls)
        vc = pc.value_counts(arr)
        return cls(np.asarray(vc.field("counts").to_numpy(), dtype=np.int64),
                   vc.field("values"), 0, nulls)

    def sparse(self) -> tuple[np.ndarray | pa.Array, np.ndarray]:
        if self.values is not None:
            return self.values, self.counts
        nz = np.flatnonzero(self.counts)
        return (nz + self.base).astype(np.int64), self.counts[nz]

    def merge(self, other: ValueCounts) -> ValueCounts:
        if len(other.counts) == 0:
            return ValueCounts(self.counts, self.values, self.base, self.nulls + other.nulls)
        if len(self.counts) == 0:
            return ValueCounts(other.counts, other.values, other.base, self.nulls + other.nulls)
        nulls = self.nulls + other.nulls
        if self.dense and other.dense:
            lo = min(self.base, other.base)
            hi = max(self.base + len(self.counts), other.base + len(other.counts))
            if hi - lo <= max(self.rows + other.rows, DENSE_FLOOR):
                out = np.zeros(hi - lo, np.int64)
                out[self.base - lo:self.base - lo + len(self.counts)] += self.counts
                out[other.base - lo:other.base - lo + len(other.counts)] += other.counts
                return ValueCounts(out, None, lo, nulls)
        va, ca = self.sparse()
        vb, cb = other.sparse()
        if isinstance(va, np.ndarray) and isinstance(vb, np.ndarray):
            values, inverse = np.unique(np.concatenate([va, vb]), return_inverse=True)
            counts = np.bincount(inverse, weights=np.concatenate([ca, cb]),
                                 minlength=len(values))
            return ValueCounts(counts.astype(np.int64), values, 0, nulls)
        a = pa.array(va) if isinstance(va, np.ndarray) else va
        b = pa.array(vb) if isinstance(vb, np.ndarray) else vb
        if a.type != b.type:
            raise BadRequest(f"cannot merge counts of {a.type} values with {b.type} values")
        t = pa.table({"v": pa.concat_arrays([a, b]),
                      "c": pa.array(np.concatenate([ca, cb]))})
        g = t.group_by("v").aggregate([("c", "sum")])
        return ValueCounts(np.asarray(g.column("c_sum").to_numpy(), dtype=np.int64),
                           _single(g.column("v")), 0, nulls)

    def _ordered(self) -> tuple[list[Any], np.ndarray]:
        """Values and counts, by count descending then value ascending."""
        values, counts = self.sparse()
        vals = values if isinstance(values, np.ndarray) else np.asarray(
            values.to_numpy(zero_copy_only=False))
        order = np.lexsort((vals, -counts))
        return [_json_value(v) for v in vals[order]], counts[order]

    def top_k(self, k: int) -> dict[str, Any]:
        values, counts = self.sparse()
        n = len(counts)
        if n > 4 * k:
            # Only values reaching the k-th largest count matter: select them in O(n).
            kth = np.partition(counts, n - k)[n - k]
            keep = np.flatnonzero(counts >= kth)
            counts = counts[keep]
            values = values[keep] if isinstance(values, np.ndarray) else values.take(
                pa.array(keep))
        sub = ValueCounts(counts, values if len(counts) else np.zeros(0, np.int64))
        vals, cnts = sub._ordered()
        top = [[v, int(c)] for v, c in zip(vals[:k], cnts[:k], strict=True)]
        out: dict[str, Any] = {"top": top, "distinct": n}
        if len(cnts) > k:
            cutoff = int(cnts[k - 1])
            tied = [v for v, c in zip(vals[k:], cnts[k:], strict=True) if c == cutoff]
            if tied:
                # Values with the k-th count that did not fit: the top k is not unique.
                out["ties"] = {"count": cutoff, "more": len(tied), "values": tied[:LISTED_TIES]}
        return out

    def groups(self, limit: int | None = None) -> list[list[Any]]:
        vals, cnts = self._ordered()
        pairs = [[v, int(c)] for v, c in zip(vals, cnts, strict=True)]
        if self.nulls:
            pairs.append([None, self.nulls])
        return pairs[:limit] if limit else pairs


# -- distinct counts -----------------------------------------------------------------------
@dataclass(frozen=True)
class Distinct:
    """Exact: the distinct values themselves (sorted numpy ints, or an Arrow array)."""

    values: np.ndarray | pa.Array

    @classmethod
    def of(cls, col: pa.ChunkedArray | pa.Array) -> Distinct:
        arr = _single(col).drop_null()
        if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
            arr = arr.cast(pa.int64())
        if _is_int(arr.type):
            return cls(np.unique(np.asarray(arr.to_numpy(zero_copy_only=False))))
        return cls(pc.unique(arr))

    def merge(self, other: Distinct) -> Distinct:
        a, b = self.values, other.values
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            return Distinct(np.union1d(a, b))
        pa_a = pa.array(a) if isinstance(a, np.ndarray) else a
        pa_b = pa.array(b) if isinstance(b, np.ndarray) else b
        if len(pa_a) == 0:
            return Distinct(pa_b)
        if len(pa_b) == 0:
            return Distinct(pa_a)
        return Distinct(pc.unique(pa.concat_arrays([pa_a, pa_b.cast(pa_a.type)])))

    def count(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Sketch:
    """Approximate: HyperLogLog registers."""

    regs: np.ndarray

    @classmethod
    def of(cls, col: pa.ChunkedArray | pa.Array) -> Sketch:
        return cls(hll.registers(hll.hash_array(_single(col))))

    def merge(self, other: Sketch) -> Sketch:
        return Sketch(np.maximum(self.regs, other.regs))

    def count(self) -> int:
        return round(hll.estimate(self.regs))


# -- count, min, max, mean -------------------------------------------------------------------
@dataclass(frozen=True)
class Rows:
    n: int

    def merge(self, other: Rows) -> Rows:
        return Rows(self.n + other.n)


@dataclass(frozen=True)
class Moments:
    count: int  # non-null values
    min: Any
    max: Any
    total: float | int | None  # None for non-numeric columns

    @classmethod
    def of(cls, col: pa.ChunkedArray | pa.Array) -> Moments:
        arr = _single(col)
        if pa.types.is_timestamp(arr.type):
            arr = arr.cast(pa.int64())
        count = len(arr) - arr.null_count
        if count == 0:
            return cls(0, None, None, 0 if _numeric(arr.type) else None)
        mm = pc.min_max(arr)
        total = pc.sum(arr).as_py() if _numeric(arr.type) else None
        return cls(count, _json_value(mm["min"].as_py()), _json_value(mm["max"].as_py()), total)

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        total = None if self.total is None or other.total is None else self.total + other.total
        return Moments(self.count + other.count, min(self.min, other.min),
                       max(self.max, other.max), total)


def _numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


# -- the request's aggregates ------------------------------------------------------------------
Partial = ValueCounts | Distinct | Sketch | Rows | Moments


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise BadRequest(f"no field {name!r}; fields are {', '.join(table.column_names)}")
    return table.column(name)


def bucket_ids(col: pa.ChunkedArray | pa.Array, bucket: float) -> pa.Array:
    """Bucket number of each value: floor(seconds / bucket); timestamps by their unit."""
    arr = _single(col)
    t = arr.type
    if pa.types.is_timestamp(t):
        per_s = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.unit]
        x = np.asarray(arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False))
        width = bucket * per_s
        if width == int(width):
            ids = np.floor_divide(x, int(width))
        else:
            ids = np.floor(x / width).astype(np.int64)
        return pa.array(ids, mask=np.asarray(arr.is_null().to_numpy(zero_copy_only=False)))
    if _numeric(t):
        nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
        if pa.types.is_integer(t) and float(bucket).is_integer():
            x = np.asarray(arr.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False))
            return pa.array(np.floor_divide(x, int(bucket)), mask=nulls)
        x = np.asarray(arr.fill_null(0).cast(pa.float64()).to_numpy(zero_copy_only=False))
        ids = np.floor(x / bucket)
        bad = nulls | ~np.isfinite(ids)
        return pa.array(np.where(bad, 0, ids).astype(np.int64), mask=bad)
    raise BadRequest(f"histogram needs a time or number field; {t} is neither")


def partial(agg: Aggregate, table: pa.Table,
            zones: dict[str, Any] | None = None) -> Partial:
    """One aggregate's partial over one chunk (already filtered)."""
    if agg.op == "count":
        return Rows(table.num_rows)
    assert agg.field is not None
    col = _column(table, agg.field)
    if agg.op in ("top_k", "group_count"):
        zone = (zones or {}).get(agg.field)
        bounds = (int(zone[0]), int(zone[1])) if zone and _is_int(col.type) else None
        return ValueCounts.of(col, bounds)
    if agg.op == "histogram":
        return ValueCounts.of(bucket_ids(col, agg.bucket))
    if agg.op == "distinct_count":
        return Sketch.of(col) if agg.approx else Distinct.of(col)
    if agg.op == "mean" and not _numeric(col.type):
        raise BadRequest(f"mean needs a number field; {agg.field} is {col.type}")
    return Moments.of(col)


def _bucket_start(v: int, bucket: float) -> float | int:
    start = v * bucket
    return int(start) if float(start).is_integer() and not math.isinf(start) else start


def merge(a: Partial, b: Partial) -> Partial:
    return a.merge(b)  # type: ignore[arg-type]


def finalize(agg: Aggregate, p: Partial) -> Any:
    if isinstance(p, Rows):
        return p.n
    if isinstance(p, Distinct | Sketch):
        return p.count()
    if isinstance(p, Moments):
        if agg.op == "mean":
            return None if p.count == 0 or p.total is None else p.total / p.count
        return p.min if agg.op == "min" else p.max
    if agg.op == "top_k":
        return p.top_k(agg.k)
    if agg.op == "histogram":
        # Rows without a value fall in no bucket.
        pairs = sorted(x for x in p.groups() if x[0] is not None)
        return [[_bucket_start(v, agg.bucket), c] for v, c in pairs]
    return p.groups()
