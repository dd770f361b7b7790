"""Executors of the IP/time queries over an opened records view, all per-row work in numpy.

Chunks are visited in time order, grouped where their time ranges overlap (appends of late
data); hits are ordered by (time, chunk position, row), which is input order for equal times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from quarry.datasets.records import Chunk, RecordsView
from quarry.errors import BadRequest
from quarry.formats.ipaddr import format_ip, format_ips, halves, keys32
from quarry.index.ip_index import IpIndex
from quarry.index.zonemap import overlaps
from quarry.query.model import (
    Cursor,
    DistinctQuery,
    FindQuery,
    MembershipQuery,
    VisitsQuery,
    Window,
)
from quarry.query.runs import merge_runs, owner_dtype

V4_LO = np.uint64(0xFFFF << 32)
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Hits:
    """Matching records in order: times (µs), chunk positions, rows, and for each the index
    of its address among the query's ``ips``."""

    ts: np.ndarray
    chunk: np.ndarray
    row: np.ndarray
    qi: np.ndarray
    ips: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, n: int, start: int = 0) -> Hits:
        """``n`` hits from ``start``."""
        end = start + n
        return Hits(self.ts[start:end], self.chunk[start:end], self.row[start:end],
                    self.qi[start:end], self.ips)

    def take(self, idx: np.ndarray) -> Hits:
        return Hits(self.ts[idx], self.chunk[idx], self.row[idx], self.qi[idx], self.ips)

    def _names(self) -> tuple[np.ndarray, np.ndarray]:
        """Text of the addresses that occur (only those are formatted), and each hit's."""
        # bincount, not np.unique: O(n) where a sort of a large answer costs more than the query.
        used = np.flatnonzero(np.bincount(self.qi, minlength=len(self.ips)))
        remap = np.zeros(len(self.ips), dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        names = np.array([format_ip(self.ips[int(u)]) for u in used], dtype=object)
        return names, remap[self.qi]

    def ip_list(self) -> list[str]:
        names, inverse = self._names()
        out: list[str] = names[inverse].tolist()
        return out

    def seconds(self) -> np.ndarray:
        return self.ts / 1e6

    def to_arrow(self) -> pa.Table:
        """Columnar ``ip`` and ``ts`` (POSIX seconds, float64).

        ``ip`` is dictionary-encoded over the query's addresses, in query order, some of which
        may not occur: its indices are the owners as they are, where a dictionary of only the
        addresses that occur would cost a count and a gather over every record.
        """
        if len(self.ips) <= 256:  # one C call each beats Arrow's per-call overhead here
            names = pa.array([format_ip(b) for b in self.ips], pa.string())
        else:
            names = format_ips(np.frombuffer(b"".join(self.ips), dtype=np.uint8).reshape(-1, 16))
        # safe=False: owners index the query's addresses by construction, so Arrow's check of
        # every index (a pass over the answer) proves nothing.
        ip = pa.DictionaryArray.from_arrays(pa.array(self.qi.astype(np.int32), pa.int32()),
                                            names, safe=False)
        return pa.table({"ip": ip, "ts": pa.array(self.seconds(), pa.float64())})

    def cursor(self, version: str) -> Cursor:
        return Cursor(version, int(self.ts[-1]), int(self.chunk[-1]), int(self.row[-1]))


@dataclass(frozen=True)
class FindPage:
    hits: Hits
    next_cursor: str | None


class _Probe:
    """Query addresses prepared for index lookups."""

    def __init__(self, ips: tuple[bytes, ...]) -> None:
        arr = np.frombuffer(b"".join(ips), dtype=np.uint8).reshape(-1, 16)
        self.ips = arr
        self.keys, self.v4 = keys32(arr)
        # Owner indexes in the smallest type that holds them (MAX_IPS fits 16 bits): the
        # answer carries one per record.
        self.owner_dtype = owner_dtype(len(ips))
        self.v4_idx = np.flatnonzero(self.v4).astype(self.owner_dtype)
        self.all_idx = np.arange(len(ips), dtype=self.owner_dtype)
        self.ip_bytes = ips

    def rows(self, chunk: Chunk, r0: int, r1: int,
             scan: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Rows (int64) in ``[r0, r1)`` of ``chunk`` holding one of the addresses, ascending,
        and the index of the query address each holds (``self.owner_dtype``).

        With ``scan`` the chunk's index is not touched (a sleeping shard): every row in the
        range is compared, a pass over the column instead of two binary searches.
        """
        if scan:
            return self.scan(chunk.ip[r0:r1], r0)
        idx: IpIndex = chunk.index
        owners = self.v4_idx if chunk.info.exact else self.all_idx
        if len(owners) == 0:
            return _EMPTY, np.zeros(0, dtype=self.owner_dtype)
        lo, hi = idx.ranges(self.keys[owners], r0, r1)
        rows = idx.rows(lo, hi)  # uint32, one ascending run per address
        qi = np.repeat(owners, hi - lo)
        if not chunk.info.exact and len(rows):
            # A 32-bit key may be an IPv6 hash shared by other addresses: check the bytes.
            ok = (chunk.ip[rows] == self.ips[qi]).all(axis=1)
            rows, qi = rows[ok], qi[ok]
        return merge_runs(rows, qi, r0, r1, int(np.count_nonzero(hi > lo)))

    def scan(self, ips: np.ndarray, r0: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (plus ``r0``) of rows of ``ips`` holding a query address, and its index."""
        none = np.zeros(0, dtype=self.owner_dtype)
        if len(ips) == 0 or len(self.ips) == 0:
            return _EMPTY, none
        keys, _ = keys32(ips)
        cand = np.flatnonzero(np.isin(keys, self.keys))
        if len(cand) == 0:
            return _EMPTY, none
        # Keys of IPv6 addresses are hashes and may collide: match the 16 bytes, and find each
        # candidate's query address, with one sort of both sets as 16-byte items.
        qv = np.ascontiguousarray(self.ips).view("V16").ravel()
        cv = np.ascontiguousarray(ips[cand]).view("V16").ravel()
        _, inv = np.unique(np.concatenate([qv, cv]), return_inverse=True)
        owner_of = np.full(len(qv) + len(cv), -1, dtype=np.int64)
        owner_of[inv[:len(qv)]] = np.arange(len(qv))
        owner = owner_of[inv[len(qv):]]
        keep = owner >= 0
        return cand[keep].astype(np.int64) + r0, owner[keep].astype(self.owner_dtype)


def _groups(view: RecordsView, w: Window) -> Iterator[list[Chunk]]:
    """Chunks overlapping the window, in time order, grouped where they overlap each other."""
    cands = [c for c in view.chunks if overlaps(c.info.zones.get("ts"), w.start_us, w.end_us)]
    cands.sort(key=lambda c: (c.info.ts_range[0], c.position))
    group: list[Chunk] = []
    group_end = 0
    for c in cands:
        lo, hi = c.info.ts_range
        if group and lo > group_end:
            yield group
            group = []
        group.append(c)
        group_end = hi if len(group) == 1 else max(group_end, hi)
    if group:
        yield group


def _positions(chunk: Chunk, n: int) -> np.ndarray:
    """The chunk's position ``n`` times: a read-only view of one int64 (stride 0), which
    costs nothing for an answer of millions of records; copies (concatenation, ``take``)
    come out as ordinary arrays."""
    return np.broadcast_to(np.int64(chunk.position), (n,))


def _group_rows(group: list[Chunk], w: Window, probe: _Probe,
                scan: bool) -> list[tuple[Chunk, np.ndarray, np.ndarray]]:
    """The probe's rows in each chunk of ``group`` within ``w`` (chunks without any left
    out), with the query address of each row: what ``_merge`` puts in time order."""
    parts = []
    for c in group:
        r0, r1 = c.row_range(w.start_us, w.end_us)
        if r1 > r0:
            rows, qi = probe.rows(c, r0, r1, scan)
            if len(rows):
                parts.append((c, rows, qi))
    return parts


def _merge(parts: list[tuple[Chunk, np.ndarray, np.ndarray]], ips: tuple[bytes, ...]) -> Hits:
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return Hits(z, z, z, z, ips)
    if len(parts) == 1:
        c, r, q = parts[0]
        return Hits(np.take(c.ts, r), _positions(c, len(r)), r, q, ips)
    ts = np.concatenate([np.take(c.ts, r) for c, r, _ in parts])
    pos = np.concatenate([_positions(c, len(r)) for c, r, _ in parts])
    row = np.concatenate([r for _, r, _ in parts])
    qi = np.concatenate([q for _, _, q in parts])
    hits = Hits(ts, pos, row, qi, ips)
    if len(parts) > 1:
        hits = hits.take(np.lexsort((row, pos, ts)))
    return hits


def find_iter(view: RecordsView, q: FindQuery, scan: bool = False) -> Iterator[Hits]:
    """All records of the query's addresses in its window, in order, group by group."""
    view.require_iplog()
    if not q.ips:
        return
    probe = _Probe(q.ips)
    w = q.window
    cur = q.cursor
    if cur is not None:
        if cur.version != view.version:
            raise BadRequest("this cursor belongs to another version of the dataset; pass "
                             f"version={cur.version[:12]} or start again")
        w = Window(cur.ts if w.start_us is None else max(w.start_us, cur.ts), w.end_us)
    for group in _groups(view, w):
        hits = _merge(_group_rows(group, w, probe, scan), probe.ip_bytes)
        if cur is not None and len(hits):
            after = (hits.ts > cur.ts) | ((hits.ts == cur.ts) & (
                (hits.chunk > cur.chunk) | ((hits.chunk == cur.chunk) & (hits.row > cur.row))))
            hits = hits.take(np.flatnonzero(after))
        if len(hits):
            yield hits


def find_page(view: RecordsView, q: FindQuery, scan: bool = False) -> FindPage:
    """At most ``limit`` records, and a cursor to the next page if there are more."""
    view.require_iplog()
    got: list[Hits] = []
    n = 0
    for hits in find_iter(view, q, scan):
        got.append(hits)
        n += len(hits)
        if n > q.limit:
            break
    if not got:
        return FindPage(_merge([], q.ips), None)
    merged = got[0] if len(got) == 1 else Hits(
        np.concatenate([h.ts for h in got]), np.concatenate([h.chunk for h in got]),
        np.concatenate([h.row for h in got]), np.concatenate([h.qi for h in got]),
        got[0].ips)
    if len(merged) > q.limit:
        page = merged.slice(q.limit)
        return FindPage(page, page.cursor(view.version).encode())
    return FindPage(merged, None)


def membership(view: RecordsView, q: MembershipQuery, scan: bool = False) -> np.ndarray:
    """For each query address (in order), whether it has a record in the window."""
    view.require_iplog()
    found = np.zeros(len(q.ips), dtype=bool)
    if not q.ips:
        return found
    probe = _Probe(q.ips)
    w = q.window
    for group in _groups(view, w):
        for c in group:
            todo = ~found
            if not todo.any():
                return found
            r0, r1 = c.row_range(w.start_us, w.end_us)
            if r1 <= r0:
                continue
            if scan:
                found[probe.rows(c, r0, r1, True)[1]] = True
                continue
            sel = todo & probe.v4 if c.info.exact else todo
            if not sel.any():
                continue
            lo, hi = c.index.ranges(probe.keys[sel], r0, r1)
            where = np.flatnonzero(sel)
            if c.info.exact:
                found[where[hi > lo]] = True
                continue
            for i in where[hi > lo]:
                rows = c.index.rows(lo[where == i], hi[where == i])
                cand = c.ip[rows]
                if np.any((cand == probe.ips[i]).all(axis=1)):
                    found[i] = True
    return found


@dataclass(frozen=True)
class Visits:
    count: int
    first_us: int | None
    last_us: int | None
    times_us: np.ndarray  # the first ``limit`` times, in order
    buckets: tuple[np.ndarray, np.ndarray] | None  # bucket starts (s) and counts


def visits(view: RecordsView, q: VisitsQuery, scan: bool = False) -> Visits:
    """Every visit of one address in the window (reverse lookup), with counts."""
    view.require_iplog()
    probe = _Probe((q.ip,))
    w = q.window
    parts: list[np.ndarray] = []
    for group in _groups(view, w):
        chunk_hits = _group_rows(group, w, probe, scan)
        if chunk_hits:
            parts.append(_merge(chunk_hits, probe.ip_bytes).ts)
    ts = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    buckets = None
    if q.bucket_s:
        b = ts // (q.bucket_s * 1_000_000)
        starts, counts = np.unique(b, return_counts=True)
        buckets = (starts * q.bucket_s, counts)
    return Visits(len(ts), int(ts[0]) if len(ts) else None, int(ts[-1]) if len(ts) else None,
                  ts[: q.limit], buckets)


@dataclass(frozen=True)
class Distinct:
    distinct: int
    rows: int
    ips: np.ndarray  # (k, 16) uint8, the page
    counts: np.ndarray


@dataclass(frozen=True)
class AddressCounts:
    """Distinct addresses as sorted (high, low) 64-bit halves, with their record counts."""

    hi: np.ndarray
    lo: np.ndarray
    counts: np.ndarray

    @classmethod
    def merge(cls, parts: list[AddressCounts]) -> AddressCounts:
        parts = [p for p in parts if len(p.counts)]
        if not parts:
            z = np.zeros(0, dtype=np.uint64)
            return cls(z, z, np.zeros(0, dtype=np.int64))
        if len(parts) == 1:
            return parts[0]
        return _reduce(np.concatenate([p.hi for p in parts]),
                       np.concatenate([p.lo for p in parts]),
                       np.concatenate([p.counts for p in parts]))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Partials cross process boundaries (pool, Ray): IPv4-only counts travel as 4-byte
        # addresses and 4-byte counts, a third of the 24 bytes per address in memory.
        if len(self.counts) and not self.hi.any() and bool((self.lo >> 32 == 0xFFFF).all()) \
                and int(self.counts.max()) < 1 << 32:
            return _v4_counts, ((self.lo & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                                self.counts.astype(np.uint32))
        return AddressCounts, (self.hi, self.lo, self.counts)


def _v4_counts(keys: np.ndarray, counts: np.ndarray) -> AddressCounts:
    return AddressCounts(np.zeros(len(keys), dtype=np.uint64), V4_LO | keys.astype(np.uint64),
                         counts.astype(np.int64))


def _reduce(hi: np.ndarray, lo: np.ndarray, cnt: np.ndarray) -> AddressCounts:
    order = np.lexsort((lo, hi))
    hi, lo, cnt = hi[order], lo[order], cnt[order]
    change = np.flatnonzero((np.diff(hi) != 0) | (np.diff(lo) != 0)) + 1
    starts = np.concatenate(([0], change))
    return AddressCounts(hi[starts], lo[starts], np.add.reduceat(cnt, starts))


def distinct(view: RecordsView, q: DistinctQuery, scan: bool = False) -> Distinct:
    """Distinct addresses in the window with their record counts (forward lookup)."""
    return distinct_page(address_counts(view, q.window, scan), q)


def address_counts(view: RecordsView, w: Window, scan: bool = False) -> AddressCounts:
    """Every distinct address in the window with its record count (the mergeable part)."""
    view.require_iplog()
    his: list[np.ndarray] = []
    los: list[np.ndarray] = []
    cnts: list[np.ndarray] = []
    for group in _groups(view, w):
        for c in group:
            r0, r1 = c.row_range(w.start_us, w.end_us)
            if r1 <= r0:
                continue
            if c.info.exact and not scan:
                # The index is sorted by key: run lengths give the counts without a sort.
                keys, counts = c.index.key_counts(r0, r1)
                his.append(np.zeros(len(keys), dtype=np.uint64))
                los.append(V4_LO | keys.astype(np.uint64))
            else:
                h, lo = halves(c.ip[r0:r1])
                if h.any():
                    order = np.lexsort((lo, h))
                    h, lo = h[order], lo[order]
                    change = np.flatnonzero((np.diff(h) != 0) | (np.diff(lo) != 0)) + 1
                else:
                    # IPv4 only (the high halves are all 0): one sort of the low halves
                    # instead of a two-key lexsort and a gather, about 2.5x faster.
                    lo = np.sort(lo)
                    change = np.flatnonzero(np.diff(lo)) + 1
                starts = np.concatenate(([0], change))
                counts = np.diff(np.append(starts, len(h)))
                his.append(h[starts])
                los.append(lo[starts])
            cnts.append(counts.astype(np.int64))
    if not cnts:
        return AddressCounts.merge([])
    if len(cnts) == 1:
        return AddressCounts(his[0], los[0], cnts[0])
    return _reduce(np.concatenate(his), np.concatenate(los), np.concatenate(cnts))


def distinct_page(ac: AddressCounts, q: DistinctQuery) -> Distinct:
    """The page of ``q`` (order, offset, limit) out of all the counts."""
    hi, lo, cnt = ac.hi, ac.lo, ac.counts
    if not len(cnt):
        return Distinct(0, 0, np.zeros((0, 16), dtype=np.uint8), np.zeros(0, dtype=np.int64))
    total_rows = int(cnt.sum())
    if q.order == "count":
        order = np.lexsort((lo, hi, -cnt))  # most records first, then address order
        sel = order[q.offset:q.offset + q.limit]
    else:
        sel = np.arange(q.offset, min(len(cnt), q.offset + q.limit))
    ips = np.empty((len(sel), 2), dtype=">u8")
    ips[:, 0] = hi[sel]
    ips[:, 1] = lo[sel]
    return Distinct(len(cnt), total_rows, ips.view(np.uint8).reshape(-1, 16), cnt[sel])
