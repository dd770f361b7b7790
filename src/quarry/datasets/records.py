"""The ``records`` kind: typed rows in Arrow IPC chunks, read memory-mapped.

Storage format (one snapshot):

* each **chunk** is an Arrow IPC *file* blob (one record batch, uncompressed, so reading it
  is a memory map with zero copy) of at most ``chunk_rows`` rows sorted by the dataset's
  optional sort key (``ts`` for access logs; stable: equal keys keep their input order);
* beside each chunk, when the table has an ``ip`` column of addresses, an **IP index** blob,
  an Arrow IPC file with one uint64 column, the sorted ``key << 32 | row`` (see
  :mod:`quarry.index.ip_index`), and one blob per **declared key** (see
  :mod:`quarry.index.keys`);
* the manifest's ``meta`` holds the schema, the sort key, the declared keys and, per chunk,
  its blobs, row count, zone maps (min/max of timestamp, number and IP columns) and whether
  its IP index is exact. Records of other shapes (items from a paged API) may have no ip
  column, hence no IP index, and another sort key (``sort_key`` in the manifest, e.g. ``id``).
  Chunks are listed in the order they were added; an append reuses all of the parent's
  chunks and adds new ones, so chunks may overlap in time and readers merge them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from quarry.errors import BadRequest, Corrupt
from quarry.formats import logical
from quarry.index.ip_index import IpIndex
from quarry.store import Part, Snapshot, Store

KIND = "records"
SORT_KEY = "ts"
IP_KEY = "ip"


@dataclass(frozen=True)
class ChunkInfo:
    data: str  # blob id of the Arrow IPC file
    data_size: int
    index: str | None  # blob id of the IP index; None (or "") without an ip column
    index_size: int
    rows: int
    zones: Mapping[str, Sequence[Any]]
    exact: bool  # every IP key is an IPv4 address (no hash collisions possible)
    keys: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # key name -> [blob, size]

    def to_json(self) -> dict[str, Any]:
        d = {"data": self.data, "data_size": self.data_size, "index": self.index,
             "index_size": self.index_size, "rows": self.rows,
             "zones": {k: list(v) for k, v in self.zones.items()}, "exact": self.exact}
        if self.keys:  # absent for access logs, so their manifests (and ids) are unchanged
            d["keys"] = {k: list(v) for k, v in self.keys.items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ChunkInfo:
        return cls(data=d["data"], data_size=int(d["data_size"]), index=d.get("index"),
                   index_size=int(d["index_size"]), rows=int(d["rows"]),
                   zones=d.get("zones", {}), exact=bool(d.get("exact", False)),
                   keys=d.get("keys", {}))

    @property
    def ts_range(self) -> tuple[int, int]:
        lo, hi = self.zones[SORT_KEY]
        return int(lo), int(hi)


def schema_to_json(schema: pa.Schema) -> list[dict[str, str]]:
    out = []
    for f in schema:
        kind = (f.metadata or {}).get(b"quarry.type", b"").decode() or str(f.type)
        out.append({"name": f.name, "type": kind})
    return out


def make_snapshot(name: str, fmt: str, schema: pa.Schema, chunks: Sequence[ChunkInfo], *,
                  message: str = "", extra: Mapping[str, Any] | None = None,
                  sort_key: str | None = SORT_KEY) -> Snapshot:
    # The content identity is the ordered list of chunk blobs: equal data, equal sha256, so
    # re-ingesting the same logs makes no new version.
    ident = hashlib.sha256("\n".join(c.data for c in chunks).encode()).hexdigest()
    parts: list[Part] = []
    # Declared keys are part of the content: the same rows keyed differently are a new version.
    ident = hashlib.sha256("\n".join(
        [c.data for c in chunks] + [k for c in chunks for k in sorted(c.keys)]).encode()
    ).hexdigest() if any(c.keys for c in chunks) else ident
    for c in chunks:
        parts.append(Part("chunk", c.data, c.data_size))
        if c.index:
            parts.append(Part("ip-index", c.index, c.index_size))
        for blob, size in c.keys.values():
            parts.append(Part("key", str(blob), int(size)))
    rows = sum(c.rows for c in chunks)
    ts = [c.zones[sort_key] for c in chunks
          if c.rows and sort_key is not None and sort_key in c.zones]
    key_range = [min(t[0] for t in ts), max(t[1] for t in ts)] if ts else None
    meta: dict[str, Any] = {
        "format": fmt, "rows": rows, "sort_key": sort_key, "schema": schema_to_json(schema),
        "time_range": key_range if sort_key == SORT_KEY else None,
        "chunks": [c.to_json() for c in chunks],
    }
    if sort_key != SORT_KEY:
        meta["key_range"] = key_range
    meta.update(extra or {})
    size = sum(c.data_size + c.index_size + sum(int(k[1]) for k in c.keys.values())
               for c in chunks)
    return Snapshot(dataset=name, kind=KIND, parent=None, created=time.time(),
                    size=size, sha256=ident,
                    parts=tuple(parts), message=message, meta=meta)


def touch(buf: pa.Buffer | None) -> int:
    """Read one byte per page of ``buf`` (memory-mapped: faults every page in once)."""
    if buf is None or buf.size == 0:
        return 0
    np.frombuffer(buf, dtype=np.uint8)[::4096].sum()
    return int(buf.size)


def _map_table(path: str) -> pa.Table:
    with pa.memory_map(path, "r") as source:
        return pa.ipc.open_file(source).read_all()


def _single(col: pa.ChunkedArray) -> pa.Array:
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


class Chunk:
    """One chunk opened for reading: columns and index memory-mapped on first use."""

    def __init__(self, store: Store, info: ChunkInfo, position: int) -> None:
        self.info = info
        self.position = position  # in the manifest's chunk list: the tie-breaker after ts
        self._store = store
        self._lock = threading.Lock()
        self._table: pa.Table | None = None
        self._ts: np.ndarray | None = None
        self._ip: np.ndarray | None = None
        self._index: IpIndex | None = None
        self._touched = 0
        # Comparable numpy forms of columns, made on first use (see datasets.columns).
        self.columns: dict[str, Any] = {}

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    t = _map_table(str(self._store.blobs.path(self.info.data)))
                    if t.num_rows != self.info.rows:
                        raise Corrupt(f"chunk {self.info.data[:12]} has {t.num_rows} rows, "
                                      f"the manifest says {self.info.rows}")
                    self._table = t
        return self._table

    @property
    def ts(self) -> np.ndarray:
        """Times in µs since the epoch (int64, zero copy)."""
        if self._ts is None:
            arr = _single(self.table.column(SORT_KEY))
            self._ts = arr.cast(pa.int64()).to_numpy(zero_copy_only=True)
        return self._ts

    @property
    def ip(self) -> np.ndarray:
        """Addresses as an ``(n, 16)`` uint8 array (zero copy)."""
        if self._ip is None:
            arr = _single(self.table.column(IP_KEY))
            buf = arr.buffers()[1]
            raw = np.frombuffer(buf, dtype=np.uint8)[arr.offset * 16:(arr.offset + len(arr)) * 16]
            self._ip = raw.reshape(-1, 16)
        return self._ip

    @property
    def index(self) -> IpIndex:
        if self._index is None:
            if not self.info.index:
                raise BadRequest("these records have no ip column, so no IP index")
            t = _map_table(str(self._store.blobs.path(self.info.index)))
            comp = _single(t.column(0)).to_numpy(zero_copy_only=True)
            self._index = IpIndex(comp, self.info.exact)
        return self._index

    def warm(self) -> int:
        """Map the index and times and read every page of them; the bytes now in memory."""
        idx = self.index.comp
        ts = self.ts
        # One read per 4 KiB page pulls the file into the page cache without copying it.
        self._touched = int(idx[::512].sum()) + int(ts[::512].sum())
        return int(idx.nbytes + ts.nbytes)

    def drop_index(self) -> None:
        """Let go of the index mapping (a sleeping shard answers by scanning)."""
        self._index = None

    @property
    def index_loaded(self) -> bool:
        return self._index is not None

    def row_range(self, lo_us: int | None, hi_us: int | None) -> tuple[int, int]:
        """Rows ``[r0, r1)`` whose time lies in ``[lo_us, hi_us]`` (binary search)."""
        ts = self.ts
        r0 = 0 if lo_us is None else int(np.searchsorted(ts, lo_us, "left"))
        r1 = len(ts) if hi_us is None else int(np.searchsorted(ts, hi_us, "right"))
        return r0, max(r0, r1)


class RecordsView:
    """One ``records`` snapshot opened for reading."""

    def __init__(self, store: Store, version: str, snap: Snapshot) -> None:
        if snap.kind != KIND:
            raise BadRequest(f"{snap.dataset} is a {snap.kind} dataset; this needs a records "
                             "dataset")
        self.version = version
        self.snapshot = snap
        self.dataset = snap.dataset
        self.meta = snap.meta
        self.rows = int(snap.meta.get("rows", 0))
        self.sort_key: str | None = snap.meta.get("sort_key")
        # Logical types (see quarry.formats.logical): manifests of access logs name physical
        # Arrow types (uint16, dictionary<...>), which users and filters never see.
        self.types: dict[str, str] = {f["name"]: logical.of_text(f["type"])
                                      for f in snap.meta.get("schema", [])}
        # Declared keys: name -> field names, in key order (see quarry.index.keys).
        self.declared: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in snap.meta.get("keys", {}).items()}
        infos = [ChunkInfo.from_json(c) for c in snap.meta.get("chunks", [])]
        self.chunks = [Chunk(store, info, i) for i, info in enumerate(infos) if info.rows]
        self.store = store

    def warm(self) -> int:
        """Touch every page of every chunk (columns and blobs already opened), so queries
        answer from memory instead of taking a page fault per first touch (an *awake* shard,
        in the design's words). Returns the bytes touched."""
        total = 0
        for c in self.chunks:
            for col in c.table.columns:
                for arr in col.chunks:
                    for buf in arr.buffers():
                        total += touch(buf)
                    if pa.types.is_dictionary(arr.type):
                        for buf in arr.dictionary.buffers():
                            total += touch(buf)
        return total

    def require_iplog(self) -> None:
        """The IP/time queries need a time-sorted table with an ``ip`` address column."""
        if self.sort_key != SORT_KEY or self.types.get(IP_KEY) != "ip":
            raise BadRequest(f"{self.dataset} is not an IP/time table (it needs an ip column "
                             "and a ts sort key); query it with /query instead")

    def subset(self, positions: Sequence[int]) -> RecordsView:
        """The same version restricted to the chunks at ``positions`` (sharing them)."""
        keep = frozenset(positions)
        sub = object.__new__(RecordsView)
        sub.__dict__.update(self.__dict__)
        sub.chunks = [c for c in self.chunks if c.position in keep]
        sub.rows = sum(c.info.rows for c in sub.chunks)
        return sub

    def describe(self) -> dict[str, Any]:
        return {"rows": self.rows, "chunks": len(self.chunks), "format": self.meta.get("format"),
                "schema": [{"name": n, "type": t} for n, t in self.types.items()],
                "time_range": self.meta.get("time_range")}
