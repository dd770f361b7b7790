"""The keys a version can use: declared ones (blobs in the snapshot, memory-mapped) and built
ones (made in memory by the key builder), published together as one immutable mapping.

A query takes the mapping once, at its start, and uses only that: a swap by the builder
(a single reference assignment) never changes the keys under a running query.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa

from quarry.datasets.gather import VersionColumns, version_columns
from quarry.datasets.records import Chunk, RecordsView, touch
from quarry.index.keys import ChunkKey, KeySpec
from quarry.index.payload import Budget, Payload, build_payload
from quarry.logs import LOGGER

log = logging.getLogger(LOGGER + ".keys")
# Versions up to this many rows get their version-wide keys at once (well under a second).
SYNC_ROWS = 2_000_000
_STARTING = threading.Lock()  # starting background builds


def _map_table(path: str) -> pa.Table:
    with pa.memory_map(path, "r") as source:
        return pa.ipc.open_file(source).read_all()


@dataclass
class Key:
    """One key over every chunk of a version."""

    spec: KeySpec
    source: str  # declared, built or accepted
    chunks: dict[int, ChunkKey] = field(default_factory=dict)  # built keys: by chunk position
    nbytes: int = 0
    uses: int = 0  # queries and joins planned with this key (statistics, not exact under races)
    # Declared keys: the key over the whole version (see ``ChunkKey.merge``) for the chunk
    # positions it was made from. It is held in memory (12 bytes a row plus the domains)
    # beside the mapped blobs; built keys have none, as it would take twice their share of
    # the key budget.
    _whole: tuple[tuple[int, ...], ChunkKey | None] | None = field(default=None, repr=False,
                                                                   compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _building: bool = field(default=False, repr=False, compare=False)
    # Declared keys within the payload budget: every column in this key's order (positions,
    # the copy or None when refused).
    _payload: tuple[tuple[int, ...], Payload | None] | None = field(default=None, repr=False,
                                                                   compare=False)

    def whole(self, view: RecordsView, positions: tuple[int, ...],
              wait: bool = False) -> ChunkKey | None:
        """The version-wide key of ``view`` (whose chunks are at ``positions``); None when a
        chunk has no part of this key, no field fits, or the key is not declared. A small
        version's is made at once; a large one's (seconds at 20 M rows) in the background
        unless ``wait``, and until it is ready callers get None and use the chunks' keys."""
        if self.source != "declared":
            return None
        hit = self._whole
        if hit is not None and hit[0] == positions:
            return hit[1]
        if wait or view.rows <= SYNC_ROWS:
            return self._make(view, positions)
        # Not self._lock: the builder holds that for seconds, and this must not wait.
        with _STARTING:
            if not self._building:
                self._building = True
                threading.Thread(target=self._background, args=(view, positions),
                                 daemon=True, name=f"key-{self.spec.name}").start()
        return None

    def _background(self, view: RecordsView, positions: tuple[int, ...]) -> None:
        try:
            self._make(view, positions)
        finally:
            self._building = False

    def _make(self, view: RecordsView, positions: tuple[int, ...]) -> ChunkKey | None:
        try:
            with self._lock:
                hit = self._whole
                if hit is None or hit[0] != positions:
                    parts = [self.chunk_key(c) for c in view.chunks]
                    merged = None if any(p is None for p in parts) else ChunkKey.merge(
                        [p for p in parts if p is not None], [c.info.rows for c in view.chunks])
                    hit = (positions, merged)
                    self._whole = hit
                return hit[1]
        except Exception:
            log.exception("no version-wide key %s for %s", self.spec.name, view.version)
            with self._lock:
                self._whole = (positions, None)
            return None

    def payload(self, view: RecordsView, cols: VersionColumns, budget: Budget,
                wait: bool = False) -> Payload | None:
        """The payload copy of this key (see :mod:`quarry.index.payload`), or None: not
        declared, no budget (a budget set to 0 also stops the use of copies already made),
        refused for size, or (unless ``wait``) still being made in the background."""
        if budget.total <= 0:
            return None
        hit = self._payload
        if hit is not None and hit[0] == cols.positions:
            return hit[1]
        if self.source != "declared":
            return None
        if wait:
            return self._make_payload(view, cols, budget)
        with _STARTING:
            if not self._building:
                self._building = True
                threading.Thread(target=self._background_payload, args=(view, cols, budget),
                                 daemon=True, name=f"payload-{self.spec.name}").start()
        return None

    def _background_payload(self, view: RecordsView, cols: VersionColumns,
                            budget: Budget) -> None:
        try:
            self._make_payload(view, cols, budget)
        finally:
            self._building = False

    def _make_payload(self, view: RecordsView, cols: VersionColumns,
                      budget: Budget) -> Payload | None:
        with self._lock:
            hit = self._payload
            if hit is not None and hit[0] == cols.positions:
                return hit[1]
        vk = self.whole(view, cols.positions, wait=True)
        made = None
        # An estimate first (strings are stored once per chunk, copied once per row), so
        # that a copy far over the budget is not made only to be thrown away.
        guess = sum(c.table.nbytes for c in view.chunks)
        if vk is not None and cols.uniform and budget.used + guess <= budget.total:
            try:
                made = build_payload(vk, cols)
            except Exception:
                log.exception("no payload key %s for %s", self.spec.name, view.version)
            if made is not None and not budget.reserve(made.nbytes):
                made = None
        with self._lock:
            self._payload = (cols.positions, made)
        return made

    def drop_payload(self, budget: Budget) -> None:
        hit = self._payload
        self._payload = None
        if hit is not None and hit[1] is not None:
            budget.release(hit[1].nbytes)

    def chunk_key(self, chunk: Chunk) -> ChunkKey | None:
        if self.source != "declared":
            return self.chunks.get(chunk.position)
        cache = f"key:{self.spec.name}"
        hit: ChunkKey | None = chunk.columns.get(cache)
        if hit is None:
            blob = chunk.info.keys.get(self.spec.name)
            if blob is None:
                return None
            hit = ChunkKey.from_table(_map_table(str(chunk._store.blobs.path(str(blob[0])))))
            chunk.columns[cache] = hit
        return hit


def warm_keys(view: RecordsView, keys: tuple[Key, ...], budget: Budget | None = None) -> int:
    """Open and touch every page of the view's declared keys (see ``RecordsView.warm``) and
    make their version-wide forms, and their payload copies within ``budget``."""
    total = 0
    positions = tuple(c.position for c in view.chunks)
    for k in keys:
        k.whole(view, positions, wait=True)
        if budget is not None and budget.total > 0 and view.chunks:
            k.payload(view, version_columns(view), budget, wait=True)
        for c in view.chunks:
            ck = k.chunk_key(c)
            if ck is not None and k.source == "declared":
                arrays = [ck.comp, ck.rows, *(d for d in ck.domains if isinstance(d, np.ndarray))]
                for arr in arrays:
                    total += touch(pa.py_buffer(arr))
    return total


def declared_keys(view: RecordsView) -> list[Key]:
    out = []
    for name, fields in view.declared.items():
        size = sum(int(c.info.keys[name][1]) for c in view.chunks if name in c.info.keys)
        out.append(Key(KeySpec(fields), "declared", nbytes=size))
    return out


def build_key(view: RecordsView, spec: KeySpec, source: str = "built") -> Key:
    chunks = {c.position: ChunkKey.build(c, spec.fields) for c in view.chunks}
    return Key(spec, source, chunks, sum(k.nbytes for k in chunks.values()))


class KeyCatalog:
    """Per version: its declared keys (opened once) and its built keys (swapped whole)."""

    def __init__(self) -> None:
        self._declared: dict[str, tuple[Key, ...]] = {}
        self._built: dict[str, Mapping[KeySpec, Key]] = {}
        # Per version: what callers derived from its keys (plans), dropped with the keys.
        self._memo: dict[str, dict[Any, Any]] = {}
        self.payloads = Budget()  # the engine sets its total
        self._lock = threading.Lock()

    def declared(self, view: RecordsView) -> tuple[Key, ...]:
        hit = self._declared.get(view.version)
        if hit is None:
            hit = tuple(declared_keys(view))
            self._declared[view.version] = hit
        return hit

    def built(self, version: str) -> Mapping[KeySpec, Key]:
        return self._built.get(version, MappingProxyType({}))

    def keys(self, view: RecordsView) -> tuple[Key, ...]:
        return self.declared(view) + tuple(self.built(view.version).values())

    def memo(self, version: str) -> dict[Any, Any]:
        """A cache for things derived from ``version``'s keys; a swap starts a new one."""
        hit = self._memo.get(version)
        if hit is None:
            hit = self._memo.setdefault(version, {})
        return hit

    def swap(self, version: str, keys: Mapping[KeySpec, Key]) -> None:
        """Publish a new set of built keys for ``version`` in one assignment."""
        with self._lock:
            self._built[version] = MappingProxyType(dict(keys))
            self._memo.pop(version, None)

    def release(self, version: str) -> None:
        with self._lock:
            self._built.pop(version, None)
            declared = self._declared.pop(version, ())
            self._memo.pop(version, None)
        for k in declared:
            k.drop_payload(self.payloads)

    def built_bytes(self) -> int:
        return sum(k.nbytes for keys in list(self._built.values()) for k in keys.values())

    def versions(self) -> list[str]:
        return list(self._built)
