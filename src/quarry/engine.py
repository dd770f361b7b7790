"""The engine: one object holding the store and the opened snapshots, passed explicitly."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from quarry import catalog
from quarry.budget import budget_from_env, ram_share
from quarry.datasets.kinds import Data, read_data
from quarry.datasets.lines import LinesView
from quarry.datasets.records import RecordsView
from quarry.errors import BadRequest
from quarry.index.keyset import KeyCatalog
from quarry.index.payload import default_payload_budget
from quarry.query.advisor import Workload
from quarry.store import Snapshot, Store
from quarry.store.journal import ALIAS, COMMIT, DELETED, Event

V = TypeVar("V")
MAX_RESOLVED = 4096  # cached name resolutions, forgotten all at once when full
KEY_BUDGET_FRACTION = 0.25  # of physical memory, for keys the key builder makes


def default_key_budget() -> int:
    """``QUARRY_KEY_BUDGET`` (bytes, or with a K/M/G suffix), else a fraction of RAM."""
    return budget_from_env("QUARRY_KEY_BUDGET", ram_share(KEY_BUDGET_FRACTION))


class Engine:
    """Resolves dataset names and versions to opened views, caching both.

    HEAD lookups are cached for ``refresh_interval`` seconds so a hot route costs no file
    system call, while a version committed by another process is picked up within that time.
    """

    def __init__(self, store: Store | Path | str | None = None, *,
                 refresh_interval: float = 0.5, max_open: int = 64,
                 key_budget: int | None = None, payload_budget: int | None = None) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.refresh_interval = refresh_interval
        self._heads: dict[str, tuple[float, str]] = {}
        # Opened views keyed by (kind, version): one cache for every dataset kind.
        self._views: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._max_open = max_open
        self._lock = threading.Lock()
        # Keys per version (declared and built), the workload they are chosen from, and the
        # memory the key builder may use.
        self.keys = KeyCatalog()
        self.workload = Workload()
        self.key_budget = default_key_budget() if key_budget is None else key_budget
        self.keys.payloads.total = (default_payload_budget() if payload_budget is None
                                    else payload_budget)
        # Hot swap: queries lease the version they run on; a version no name points at any
        # more is released (views and keys) when its last lease ends.
        self._leases: dict[str, int] = {}
        self._current: dict[tuple[str, str], str] = {}  # (dataset, HEAD or alias) -> version
        # (dataset, alias or id prefix) -> (HEAD then, when, version): what a name resolved
        # to stays right while HEAD and the aliases do not move, so it is reused for as long
        # as a cached HEAD is (an old version's GET read HEAD and listed the aliases each
        # time, three times the cost of the GET itself).
        self._resolved: dict[tuple[str, str], tuple[str, float, str]] = {}
        # Read-your-writes: a commit made through this process moves the cached HEAD at once.
        self.store.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.event == COMMIT and event.version is not None:
            self._heads[event.dataset] = (time.monotonic(), event.version)
        elif event.event in (ALIAS, DELETED):
            for key in [k for k in list(self._resolved) if k[0] == event.dataset]:
                self._resolved.pop(key, None)
            if event.event == DELETED:  # gone at once here (other processes: within
                self._heads.pop(event.dataset, None)  # refresh_interval)
                for key in [k for k in list(self._current) if k[0] == event.dataset]:
                    self._current.pop(key, None)

    def head(self, dataset: str) -> str:
        now = time.monotonic()
        hit = self._heads.get(dataset)
        if hit is not None and now - hit[0] < self.refresh_interval:
            return hit[1]
        version = self.store.require_head(dataset)
        self._heads[dataset] = (now, version)
        return version

    def resolve(self, dataset: str, version: str | None = None) -> str:
        if version is None or version in ("", "HEAD"):
            vid = self.head(dataset)
            self._current[(dataset, "HEAD")] = vid
            return vid
        head = self.head(dataset)
        key = (dataset, version)
        now = time.monotonic()
        hit = self._resolved.get(key)
        if hit is not None and hit[0] == head and now - hit[1] < self.refresh_interval:
            return hit[2]
        vid = self.store.resolve(dataset, version)
        if not vid.startswith(version.lower()):  # a name (alias), not a pinned id
            self._current[(dataset, version)] = vid
        if len(self._resolved) >= MAX_RESOLVED:
            self._resolved.clear()
        self._resolved[key] = (head, now, vid)
        return vid

    def snapshot(self, dataset: str, version: str | None = None) -> tuple[str, Snapshot]:
        vid = self.resolve(dataset, version)
        return vid, self.store.snapshot(vid)

    def data(self, dataset: str, version: str | None = None) -> tuple[str, Snapshot, Data]:
        """A version's whole data, whatever its kind."""
        vid, snap = self.snapshot(dataset, version)
        return vid, snap, read_data(self.store, snap)

    def _view(self, kind: str, dataset: str, version: str | None,
              opener: Callable[[Store, str, Snapshot], V]) -> V:
        vid = self.resolve(dataset, version)
        key = (kind, vid)
        view = self._views.get(key)
        if view is not None:
            return view  # type: ignore[no-any-return]
        with self._lock:
            view = self._views.get(key)
            if view is None:
                snap = self.store.snapshot(vid)
                if snap.kind != kind:
                    raise BadRequest(f"{dataset} is a {snap.kind} dataset; this needs a "
                                     f"{kind} dataset")
                view = opener(self.store, vid, snap)
                self._views[key] = view
                while len(self._views) > self._max_open:
                    # Dropped views close when the last reader lets go of them.
                    self._views.popitem(last=False)
            return view  # type: ignore[no-any-return]

    def lines(self, dataset: str, version: str | None = None) -> LinesView:
        return self._view("lines", dataset, version, LinesView)

    def head_lines(self, dataset: str) -> LinesView:
        """HEAD's lines view: ``lines(dataset)`` minus the bookkeeping the view already has
        once it is open (the hot path's lookup, a few µs of every request)."""
        view = self._views.get(("lines", self.head(dataset)))
        if view is None:
            return self.lines(dataset)
        return view  # type: ignore[no-any-return]

    def records(self, dataset: str, version: str | None = None) -> RecordsView:
        return self._view("records", dataset, version, RecordsView)

    @contextmanager
    def lease(self, dataset: str, version: str | None = None) -> Iterator[RecordsView]:
        """The records view of ``version`` (HEAD, alias, id), held for one query: a name that
        moves meanwhile does not change it, and it is not released until the lease ends."""
        view = self.records(dataset, version)
        with self._lock:
            self._leases[view.version] = self._leases.get(view.version, 0) + 1
        try:
            yield view
        finally:
            with self._lock:
                left = self._leases[view.version] - 1
                if left:
                    self._leases[view.version] = left
                else:
                    del self._leases[view.version]
            if not left and view.version not in self._current.values():
                self.release_drained()

    def warm(self, dataset: str, version: str | None = None) -> int:
        """Fault a records version's chunks and declared keys into memory; bytes touched."""
        from quarry.index.keyset import warm_keys

        view = self.records(dataset, version)
        return view.warm() + warm_keys(view, self.keys.declared(view), self.keys.payloads)

    def release_drained(self) -> list[str]:
        """Close the views and keys of versions that no name points at and no query holds."""
        with self._lock:
            live = set(self._current.values()) | set(self._leases)
            gone = [k for k in self._views if k[1] not in live and k[0] == "records"]
            for k in gone:
                del self._views[k]
        for _, vid in gone:
            self.keys.release(vid)
        return [vid for _, vid in gone]

    def open_versions(self) -> list[str]:
        return [k[1] for k in list(self._views)]

    def datasets(self) -> list[dict[str, Any]]:
        return catalog.datasets(self.store)

    def describe(self, dataset: str) -> dict[str, Any]:
        return catalog.describe(self.store, dataset)
