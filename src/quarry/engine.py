"""The engine: one object holding the store and the opened snapshots, passed explicitly."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from quarry.datasets.lines import LinesView
from quarry.datasets.records import RecordsView
from quarry.errors import BadRequest, NotFound
from quarry.store import Snapshot, Store

V = TypeVar("V")
# Manifest meta entries too bulky for a dataset description (listed per chunk).
_HIDDEN_META = frozenset({"line_index", "chunks"})


class Engine:
    """Resolves dataset names and versions to opened views, caching both.

    HEAD lookups are cached for ``refresh_interval`` seconds so a hot route costs no file
    system call, while a version committed by another process is picked up within that time.
    """

    def __init__(self, store: Store | Path | str | None = None, *,
                 refresh_interval: float = 0.5, max_open: int = 64) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.refresh_interval = refresh_interval
        self._heads: dict[str, tuple[float, str]] = {}
        # Opened views keyed by (kind, version): one cache for every dataset kind.
        self._views: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._max_open = max_open
        self._lock = threading.Lock()

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
            return self.head(dataset)
        return self.store.resolve(dataset, version)

    def snapshot(self, dataset: str, version: str | None = None) -> tuple[str, Snapshot]:
        vid = self.resolve(dataset, version)
        return vid, self.store.snapshot(vid)

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

    def records(self, dataset: str, version: str | None = None) -> RecordsView:
        return self._view("records", dataset, version, RecordsView)

    def datasets(self) -> list[dict[str, Any]]:
        out = []
        for name in self.store.datasets():
            try:
                out.append(self.describe(name))
            except NotFound:
                continue
        return out

    def describe(self, dataset: str) -> dict[str, Any]:
        vid = self.store.require_head(dataset)
        snap = self.store.snapshot(vid)
        versions = len(self.store.history(dataset))
        d: dict[str, Any] = {
            "name": dataset, "kind": snap.kind, "version": vid, "created": snap.created,
            "size": snap.size, "sha256": snap.sha256, "versions": versions,
            "aliases": self.store.refs.aliases(dataset), "message": snap.message,
            "linked": snap.link is not None,
        }
        d.update({k: v for k, v in snap.meta.items() if k not in _HIDDEN_META})
        if "line_index" in snap.meta:
            d["line_index"] = snap.meta["line_index"]
        if "chunks" in snap.meta:
            d["chunks"] = len(snap.meta["chunks"])
        return d
