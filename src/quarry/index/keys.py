"""Composite keys: per chunk, the rows sorted by several fields, searched by binary chop.

Each key field's values are replaced by their *code*: the rank among the chunk's distinct
values (its *domain*, kept sorted in the key), nulls ranking last. Codes of ``f1, f2, ...``
are packed, most significant first, into one uint64 (fields that do not fit in 63 bits are
left out of that chunk's key and post-filtered). The key is that composite sorted and the
permutation of rows (equal keys in any order: readers sort the rows they take): 12 bytes a
row plus the domains.

A lookup works like Roxie's segment monitors: each leading field the query fixes with ``=`` or
``IN`` multiplies the set of composite prefixes; a range or prefix on the next field turns
each prefix into an interval, after which the remaining fields are wild. Every prefix or
interval is one pair of binary searches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from quarry.datasets.columns import column
from quarry.datasets.records import Chunk
from quarry.errors import BadRequest, Corrupt
from quarry.query.predicate import In, Leaf, Prefix, Range

MAX_BITS = 63  # one spare bit: (prefix + 1) << shift never overflows
MAX_PREFIXES = 1 << 20  # IN-set products beyond this stop the keyed part


@dataclass(frozen=True)
class KeySpec:
    fields: tuple[str, ...]

    @property
    def name(self) -> str:
        return ",".join(self.fields)

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> KeySpec:
        fields = [x.strip() for x in text.split(",")] if isinstance(text, str) else list(text)
        if not all(isinstance(f, str) for f in fields):  # (JSON bodies pass any list here)
            raise BadRequest(f"a key's fields are field names, got {str(text)[:60]}")
        return cls(tuple(f for f in fields if f))


def _next_prefix(p: str) -> str | None:
    """The smallest string greater than every string starting with ``p``."""
    while p:
        if ord(p[-1]) < 0x10FFFF:
            return p[:-1] + chr(ord(p[-1]) + 1)
        p = p[:-1]
    return None


def _order(values: np.ndarray) -> np.ndarray:
    """A sort order; addresses sort as two big-endian integers (bytes compare slowly). Ties
    may come in any order: every reader sorts the rows it takes from a key."""
    if values.dtype.kind == "S":
        pairs = values.view(">u8").reshape(-1, 2)
        return np.lexsort((pairs[:, 1], pairs[:, 0]))
    return np.argsort(values)


def encode(values: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct (valid) values and each row's rank among them, from one sort
    (``np.unique`` then ``searchsorted`` would cost a second, cache-missing pass)."""
    order = _order(values)
    if valid is not None:
        order = order[valid[order]]
    s = values[order]
    if len(s) == 0:
        return s, np.zeros(len(values), dtype=np.int64)
    change = np.empty(len(s), dtype=bool)
    change[0] = True
    np.not_equal(s[1:], s[:-1], out=change[1:])
    ranks = np.cumsum(change) - 1
    codes = np.zeros(len(values), dtype=np.int64)
    codes[order] = ranks
    return s[change], codes


class ChunkKey:
    def __init__(self, fields: tuple[str, ...], bits: tuple[int, ...],
                 domains: Sequence[Any], comp: np.ndarray, rows: np.ndarray) -> None:
        self.fields = fields
        self.bits = bits
        self.domains = list(domains)  # numpy arrays, or Arrow string arrays
        self.comp = comp
        self.rows = rows
        total = sum(bits)
        self.shifts = tuple(total - sum(bits[:i + 1]) for i in range(len(bits)))
        self._text: dict[int, np.ndarray] = {}
        self._starts: np.ndarray | None = None

    def _strings(self, i: int) -> np.ndarray:
        """A string domain as a numpy array of str, made once: binary searches on it cost
        O(log n) per value, where a hash lookup would rebuild a table of the whole domain."""
        hit = self._text.get(i)
        if hit is None:
            hit = np.asarray(self.domains[i].to_numpy(zero_copy_only=False), dtype=object)
            self._text[i] = hit
        return hit

    @property
    def nbytes(self) -> int:
        return int(self.comp.nbytes + self.rows.nbytes + sum(
            d.nbytes for d in self.domains))

    # -- building -----------------------------------------------------------------------
    @classmethod
    def build(cls, chunk: Chunk, fields: Sequence[str]) -> ChunkKey:
        n = chunk.info.rows
        comp = np.zeros(n, dtype=np.uint64)
        used: list[str] = []
        bits: list[int] = []
        domains: list[Any] = []
        codes: list[np.ndarray] = []
        for f in fields:
            col = column(chunk, f)
            if col.logical == "string":
                assert col.dictionary is not None
                order = np.asarray(pc.sort_indices(col.dictionary))
                rank = np.empty(len(order), dtype=np.int64)
                rank[order] = np.arange(len(order))
                code = rank[col.values] if len(order) else np.zeros(n, dtype=np.int64)
                domain: Any = col.dictionary.take(pa.array(order))
            else:
                domain, code = encode(col.values, col.valid)
            if col.valid is not None:
                code = np.where(col.valid, code, len(domain))
            nbits = max(1, len(domain).bit_length())
            if sum(bits) + nbits > MAX_BITS:
                break
            used.append(f)
            bits.append(nbits)
            domains.append(domain)
            codes.append(code)
        total = sum(bits)
        shift = total
        for code, b in zip(codes, bits, strict=True):
            shift -= b
            comp |= code.astype(np.uint64) << np.uint64(shift)
        # Any order among equal composites: lookups and joins sort the rows they take.
        order = np.argsort(comp)
        return cls(tuple(used), tuple(bits), domains, comp[order],
                   order.astype(np.uint32))

    @classmethod
    def merge(cls, parts: Sequence[ChunkKey], sizes: Sequence[int]) -> ChunkKey | None:
        """One key over several chunks' keys, rows numbered across them (chunk ``i``'s row
        ``r`` becomes ``sum(sizes[:i]) + r``): a lookup is then one search for the whole
        version instead of one per chunk. Codes are re-ranked in version-wide domains; the
        fields kept are the chunks' common leading ones that still fit in 63 bits (None: none).
        """
        if not parts or len(parts) != len(sizes):
            return None
        nf = min(len(p.fields) for p in parts)
        while nf and any(p.fields[:nf] != parts[0].fields[:nf] for p in parts):
            nf -= 1
        domains: list[Any] = []
        remaps: list[list[np.ndarray]] = []
        bits: list[int] = []
        for i in range(nf):
            doms = [p.domains[i] for p in parts]
            if isinstance(doms[0], pa.Array):
                if not all(isinstance(d, pa.Array) and d.type == doms[0].type for d in doms):
                    break
                u = pc.unique(pa.chunked_array(doms, doms[0].type))
                g: Any = u.take(pc.sort_indices(u))
                maps = [np.asarray(pc.index_in(d, value_set=g), dtype=np.int64) for d in doms]
                size = len(g)
            else:
                # The domains are sorted runs: a stable sort (timsort) merges them, and
                # neighbours drop the duplicates (np.unique would hash or sort from scratch).
                g = np.concatenate(doms)
                g.sort(kind="stable")
                if len(g) > 1:
                    keep = np.empty(len(g), dtype=bool)
                    keep[0] = True
                    np.not_equal(g[1:], g[:-1], out=keep[1:])
                    g = g[keep]
                maps = [g.searchsorted(d) for d in doms]
                size = len(g)
            nbits = max(1, size.bit_length())
            if sum(bits) + nbits > MAX_BITS:
                break
            # A chunk's null code (its domain's length) becomes the version's.
            remaps.append([np.append(m, size) for m in maps])
            domains.append(g)
            bits.append(nbits)
        if not bits:
            return None
        total = sum(bits)
        n = int(sum(sizes))
        rdt = np.uint32 if n < 1 << 32 else np.uint64
        comps, rows = [], []
        offset = 0
        for j, (p, size) in enumerate(zip(parts, sizes, strict=True)):
            if len(p.rows) != size or (size and int(p.rows.max()) >= size):
                # Readers gather rows by these numbers without bounds per chunk.
                raise Corrupt(f"a key on {','.join(p.fields)} does not match its chunk")
            if len(bits) == 1 and len(p.bits) == 1:  # one field: the composite is the code
                comp = remaps[0][j][p.comp].view(np.uint64)
            else:
                comp = np.zeros(len(p.comp), dtype=np.uint64)
                shift = total
                for i, b in enumerate(bits):
                    shift -= b
                    mask = np.uint64((1 << p.bits[i]) - 1)
                    code = (p.comp >> np.uint64(p.shifts[i])) & mask
                    comp |= remaps[i][j][code].view(np.uint64) << np.uint64(shift)
            comps.append(comp)
            rows.append(p.rows.astype(rdt) + np.array(offset, dtype=rdt))
            offset += int(size)
        # Re-ranking is monotonic, so each chunk's part is still sorted: the stable sort
        # (timsort) only merges the runs.
        comp = np.concatenate(comps)
        order = np.argsort(comp, kind="stable")
        return cls(tuple(parts[0].fields[:len(bits)]), tuple(bits), domains, comp[order],
                   np.concatenate(rows)[order])

    # -- lookups ------------------------------------------------------------------------
    def _codes_in(self, i: int, values: tuple[Any, ...]) -> np.ndarray:
        dom = self.domains[i]
        if isinstance(dom, pa.Array):
            dom = self._strings(i)
            vals = np.array(list(values), dtype=object)
            pos = np.searchsorted(dom, vals)
            ok = pos < len(dom)
            ok[ok] = dom[pos[ok]] == vals[ok]
            return np.unique(pos[ok]).astype(np.int64)
        if len(values) == 1:  # the common point lookup, without array set operations
            v = values[0]
            if dom.dtype.kind == "S":
                # Compare as arrays: a numpy bytes_ *scalar* drops trailing NULs, so an
                # address ending in a zero byte (1.2.3.0) would equal no element.
                v = np.array(v, dtype=dom.dtype)
                p = int(np.searchsorted(dom, v))
                hit = p < len(dom) and bool((dom[p:p + 1] == v).all())
            else:
                p = int(np.searchsorted(dom, v))
                hit = p < len(dom) and dom[p] == v
            return np.array([p] if hit else [], dtype=np.int64)
        vals = np.asarray(values, dtype=dom.dtype) if dom.dtype.kind == "S" else np.asarray(
            values).astype(dom.dtype)
        pos = np.searchsorted(dom, vals)
        ok = pos < len(dom)
        ok[ok] = dom[pos[ok]] == vals[ok]
        return np.unique(pos[ok]).astype(np.int64)

    def _code_range(self, i: int, c: Leaf) -> tuple[int, int]:
        dom = self.domains[i]
        if isinstance(c, Prefix):
            text = self._strings(i)
            p = c.text
            nxt = _next_prefix(p)
            lo = int(np.searchsorted(text, p, "left"))
            return lo, len(text) if nxt is None else int(np.searchsorted(text, nxt, "left"))
        assert isinstance(c, Range)
        # NaN sorts last in a float domain and is in no range: the codes end before it.
        end = int(np.searchsorted(dom, np.nan, "left")) if dom.dtype.kind == "f" else len(dom)
        lo = 0 if c.lo is None else int(np.searchsorted(
            dom, np.asarray(c.lo, dtype=dom.dtype) if dom.dtype.kind == "S" else c.lo,
            "left" if c.lo_incl else "right"))
        hi = end if c.hi is None else min(end, int(np.searchsorted(
            dom, np.asarray(c.hi, dtype=dom.dtype) if dom.dtype.kind == "S" else c.hi,
            "right" if c.hi_incl else "left")))
        return lo, max(lo, hi)

    def lookup(self, conds: Mapping[str, Leaf]) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """Ascending rows that satisfy the conditions on the leading fields this key serves,
        and those fields; None when the key serves none of them."""
        first = conds.get(self.fields[0])
        if isinstance(first, In) and first.is_eq and (
                len(self.fields) == 1 or self.fields[1] not in conds):
            return self.point(first.values[0]), self.fields[:1]
        prefixes = np.zeros(1, dtype=np.uint64)
        used: list[str] = []
        interval: tuple[int, int] | None = None
        last = -1
        for i, f in enumerate(self.fields):
            c = conds.get(f)
            if not isinstance(c, In | Range | Prefix):
                break
            b = np.uint64(self.bits[i])
            if isinstance(c, In):
                codes = self._codes_in(i, c.values)
                if len(prefixes) * max(1, len(codes)) > MAX_PREFIXES:
                    break
                prefixes = ((prefixes[:, None] << b) | codes.astype(np.uint64)[None, :]).ravel()
                used.append(f)
                last = i
            else:
                interval = self._code_range(i, c)
                prefixes = prefixes << b
                used.append(f)
                last = i
                break
        if not used:
            return None
        rem = np.uint64(self.shifts[last])
        if interval is not None:
            lo = (prefixes | np.uint64(interval[0])) << rem
            hi = (prefixes | np.uint64(interval[1])) << rem
        else:
            lo = prefixes << rem
            hi = (prefixes + np.uint64(1)) << rem
        a = np.searchsorted(self.comp, lo, "left")
        z = np.searchsorted(self.comp, hi, "left")
        return _gather(self.rows, a, z), tuple(used)

    def point(self, value: Any) -> np.ndarray:
        """Rows whose first field equals ``value`` (the lookup above without its arrays of
        prefixes: a point lookup's cost is a few binary searches)."""
        a, z = self.span(value)
        out = self.rows[a:z].astype(np.int64)
        out.sort()
        return out

    def span(self, value: Any) -> tuple[int, int]:
        """Where the entries whose first field equals ``value`` lie in the sorted key."""
        dom = self.domains[0]
        if isinstance(dom, np.ndarray) and dom.dtype.kind in "iuf":
            p = int(dom.searchsorted(value))
            if p == len(dom) or dom[p] != value:  # NaN: never equal
                return 0, 0
        else:
            codes = self._codes_in(0, (value,))
            if not len(codes):
                return 0, 0
            p = int(codes[0])
        shift = self.shifts[0]
        a, z = self.comp.searchsorted(np.array([p << shift, (p + 1) << shift], np.uint64))
        return int(a), int(z)

    def starts(self) -> np.ndarray:
        """Where each code of the first field starts in the sorted key (one extra entry at the
        end): a probe on that field is then two gathers instead of two binary searches."""
        if self._starts is None:
            first = (self.comp >> np.uint64(self.shifts[0])).astype(np.int64)
            counts = np.bincount(first, minlength=len(self.domains[0]) + 2)
            self._starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        return self._starts

    def probe_ranges(self, codes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """For probe rows given as per-field codes (-1: no such value here) of the leading
        ``len(codes)`` fields: each probe's ``[start, end)`` in the sorted key."""
        if len(codes) == 1:
            st = self.starts()
            c = codes[0]
            a = st[np.where(c >= 0, c, 0)]
            return a, np.where(c >= 0, st[np.where(c >= 0, c + 1, 0)], a)
        n = len(codes[0])
        ok = np.ones(n, dtype=bool)
        prefix = np.zeros(n, dtype=np.uint64)
        for i, code in enumerate(codes):
            ok &= code >= 0
            prefix = (prefix << np.uint64(self.bits[i])) | np.where(ok, code, 0).astype(
                np.uint64)
        rem = np.uint64(self.shifts[len(codes) - 1])
        a = np.searchsorted(self.comp, prefix << rem, "left")
        z = np.searchsorted(self.comp, (prefix + np.uint64(1)) << rem, "left")
        z = np.where(ok, z, a)
        return a, z

    def codes_of(self, i: int, values: pa.Array | np.ndarray) -> np.ndarray:
        """Codes of many probe values for field ``i``; -1 where the chunk lacks the value."""
        dom = self.domains[i]
        if isinstance(dom, pa.Array):
            pos = pc.index_in(values, value_set=dom)
            return np.asarray(pc.fill_null(pos, -1), dtype=np.int64)
        vals = np.asarray(values)
        pos = np.searchsorted(dom, vals)
        ok = pos < len(dom)
        ok[ok] = dom[pos[ok]] == vals[ok]
        return np.where(ok, pos, -1).astype(np.int64)

    # -- storage ------------------------------------------------------------------------
    def to_table(self) -> pa.Table:
        cols = {"comp": pa.array([self.comp], pa.list_(pa.uint64())),
                "rows": pa.array([self.rows], pa.list_(pa.uint32()))}
        for i, d in enumerate(self.domains):
            if isinstance(d, pa.Array):
                arr = d
            elif d.dtype.kind == "S":
                # From the buffer: tolist() would drop each address's trailing NUL bytes.
                arr = pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(16), len(d), [None, pa.py_buffer(np.ascontiguousarray(d).tobytes())])
            else:
                arr = pa.array(d)
            cols[f"d{i}"] = pa.ListArray.from_arrays(pa.array([0, len(arr)], pa.int32()), arr)
        meta = {"fields": orjson.dumps(self.fields), "bits": orjson.dumps(self.bits)}
        return pa.table(cols).replace_schema_metadata(meta)

    @classmethod
    def from_table(cls, t: pa.Table) -> ChunkKey:
        meta = t.schema.metadata
        fields = tuple(orjson.loads(meta[b"fields"]))
        bits = tuple(orjson.loads(meta[b"bits"]))

        def flat(name: str) -> pa.Array:
            col = t.column(name)
            return (col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()).values

        domains: list[Any] = []
        for i in range(len(fields)):
            v = flat(f"d{i}")
            if pa.types.is_fixed_size_binary(v.type):
                raw = np.frombuffer(v.buffers()[1], dtype="S16")
                domains.append(raw[v.offset:v.offset + len(v)])
            elif pa.types.is_string(v.type):
                domains.append(v)
            else:
                domains.append(v.to_numpy(zero_copy_only=True))
        return cls(fields, bits, domains, flat("comp").to_numpy(zero_copy_only=True),
                   flat("rows").to_numpy(zero_copy_only=True))


def _gather(perm: np.ndarray, a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``perm[a_i:z_i]`` for every range, concatenated and sorted ascending."""
    lens = z - a
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    if len(a) == 1:
        out = perm[int(a[0]):int(z[0])].astype(np.int64)
    else:
        starts = np.cumsum(lens) - lens
        pos = np.arange(total, dtype=np.int64) + np.repeat(a - starts, lens)
        out = perm[pos].astype(np.int64)
    out.sort()
    return out
