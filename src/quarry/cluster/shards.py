"""Shards: which chunks of a version each shard owns, and whether it is awake or asleep.

Chunks go to shards in time order, in contiguous runs of about equal rows, so a time window
prunes to few shards while a scan of everything spreads evenly. An *awake* shard answers from
its memory-mapped indexes, which it keeps in memory; an *asleep* one answers by scanning its
columns. Shards wake when used and the least recently used fall asleep to stay within the
memory budget; a shard put to sleep by hand stays asleep until woken by hand.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from quarry.datasets.records import ChunkInfo, RecordsView
from quarry.errors import NotFound


@dataclass(frozen=True)
class ShardSpec:
    dataset: str
    version: str
    index: int  # 0 .. shards-1: the channel its workers (actors, servers) serve
    chunks: tuple[int, ...]  # chunk positions in the manifest
    infos: tuple[ChunkInfo, ...]
    rows: int
    ts_range: tuple[int, int]
    index_bytes: int  # memory of the shard when awake: IP indexes and time columns

    @property
    def id(self) -> str:
        return f"{self.dataset}@{self.version[:12]}/{self.index}"


def layout(view: RecordsView, shards: int) -> tuple[ShardSpec, ...]:
    """Split the version's chunks into at most ``shards`` time-contiguous, row-balanced runs."""
    chunks = sorted(view.chunks, key=lambda c: (c.info.ts_range[0], c.position))
    n = max(1, min(shards, len(chunks)))
    total = sum(c.info.rows for c in chunks)
    groups: list[list[Any]] = [[] for _ in range(n)]
    done = 0
    g = 0
    for i, c in enumerate(chunks):
        left_chunks = len(chunks) - i
        # Move on when this run has its share of rows, but keep a chunk for every later run.
        if groups[g] and g < n - 1 and (done >= total * (g + 1) / n or left_chunks <= n - 1 - g):
            g += 1
        groups[g].append(c)
        done += c.info.rows
    out = []
    for i, grp in enumerate(groups):
        if not grp:
            continue
        infos = tuple(c.info for c in grp)
        out.append(ShardSpec(
            dataset=view.dataset, version=view.version, index=i,
            chunks=tuple(c.position for c in grp), infos=infos,
            rows=sum(x.rows for x in infos),
            ts_range=(min(x.ts_range[0] for x in infos), max(x.ts_range[1] for x in infos)),
            index_bytes=sum(x.index_size + 8 * x.rows for x in infos)))
    return tuple(out)


@dataclass
class ShardState:
    spec: ShardSpec
    awake: bool = False
    held_asleep: bool = False  # put to sleep by hand: stays asleep until woken by hand
    last_used: float = 0.0
    queries: int = 0
    inflight: int = 0
    busy_s: float = 0.0
    failures: int = 0
    recent: list[float] = field(default_factory=list)  # finish times, for a queries/s rate

    def to_json(self, now: float) -> dict[str, Any]:
        rate = sum(1 for t in self.recent if now - t <= 60.0) / 60.0
        s = self.spec
        return {"id": s.id, "dataset": s.dataset, "version": s.version, "index": s.index,
                "chunks": len(s.chunks), "rows": s.rows,
                "time_range": [s.ts_range[0] / 1e6, s.ts_range[1] / 1e6],
                "state": "awake" if self.awake else "asleep", "held_asleep": self.held_asleep,
                "memory_bytes": s.index_bytes if self.awake else 0,
                "awake_bytes": s.index_bytes,
                "load": {"queries": self.queries, "inflight": self.inflight,
                         "busy_seconds": round(self.busy_s, 6),
                         "queries_per_second_1m": round(rate, 3), "failures": self.failures},
                "last_used": self.last_used or None}


class Lifecycle:
    """Awake/asleep state of every shard laid out so far, within ``budget`` bytes."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget  # None: no limit
        self._states: dict[str, ShardState] = {}
        self._lock = threading.Lock()

    def add(self, spec: ShardSpec) -> None:
        with self._lock:
            self._states.setdefault(spec.id, ShardState(spec))

    def get(self, shard_id: str) -> ShardState:
        st = self._states.get(shard_id)
        if st is None:
            raise NotFound(f"no shard {shard_id!r}; GET /shards lists them")
        return st

    def use(self, spec: ShardSpec) -> tuple[bool, list[ShardSpec]]:
        """Mark a shard used; whether it must scan, and the shards that fell asleep."""
        with self._lock:
            st = self._states.setdefault(spec.id, ShardState(spec))
            st.last_used = time.time()
            st.inflight += 1
            if st.awake:
                return False, []
            if st.held_asleep:
                return True, []
            slept = self._make_room(spec)
            if slept is None:
                return True, []
            st.awake = True
            return False, slept

    def done(self, spec: ShardSpec, seconds: float, ok: bool) -> None:
        with self._lock:
            st = self._states[spec.id]
            st.inflight -= 1
            st.queries += 1
            st.busy_s += seconds
            if not ok:
                st.failures += 1
            now = time.time()
            st.recent.append(now)
            if len(st.recent) > 4096:
                st.recent = [t for t in st.recent if now - t <= 60.0]

    def wake(self, shard_id: str) -> tuple[ShardState, list[ShardSpec]]:
        with self._lock:
            st = self.get(shard_id)
            st.held_asleep = False
            if st.awake:
                return st, []
            slept = self._make_room(st.spec)
            if slept is None:
                from quarry.errors import InsufficientStorage
                raise InsufficientStorage(
                    f"shard {shard_id} needs {st.spec.index_bytes} bytes awake, more than the "
                    f"memory budget of {self.budget}")
            st.awake = True
            st.last_used = time.time()
            return st, slept

    def sleep(self, shard_id: str) -> ShardState:
        with self._lock:
            st = self.get(shard_id)
            st.awake = False
            st.held_asleep = True
            return st

    def _make_room(self, spec: ShardSpec) -> list[ShardSpec] | None:
        """Put least recently used shards to sleep until ``spec`` fits (None: it never can)."""
        if self.budget is None:
            return []
        if spec.index_bytes > self.budget:
            return None
        used = sum(s.spec.index_bytes for s in self._states.values() if s.awake)
        slept = []
        for st in sorted((s for s in self._states.values() if s.awake and s.spec.id != spec.id),
                         key=lambda s: s.last_used):
            if used + spec.index_bytes <= self.budget:
                break
            st.awake = False
            used -= st.spec.index_bytes
            slept.append(st.spec)
        return slept

    def memory(self) -> int:
        return sum(s.spec.index_bytes for s in self._states.values() if s.awake)

    def states(self) -> list[ShardState]:
        with self._lock:
            return list(self._states.values())
