"""The engine: one object holding the store and the opened snapshots, passed explicitly."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from quarry.datasets.kinds import Data, read_data
from quarry.datasets.lines import LinesView
from quarry.errors import BadRequest, NotFound
from quarry.store import Snapshot, Store
from quarry.store.journal import COMMIT, Event


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
        self._views: OrderedDict[str, LinesView] = OrderedDict()
        self._max_open = max_open
        self._lock = threading.Lock()
        # Read-your-writes: a commit made through this process moves the cached HEAD at once.
        self.store.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.event == COMMIT and event.version is not None:
            self._heads[event.dataset] = (time.monotonic(), event.version)

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

    def data(self, dataset: str, version: str | None = None) -> tuple[str, Snapshot, Data]:
        """A version's whole data, whatever its kind."""
        vid, snap = self.snapshot(dataset, version)
        return vid, snap, read_data(self.store, snap)

    def lines(self, dataset: str, version: str | None = None) -> LinesView:
        vid = self.resolve(dataset, version)
        view = self._views.get(vid)
        if view is not None:
            return view
        with self._lock:
            view = self._views.get(vid)
            if view is None:
                snap = self.store.snapshot(vid)
                if snap.kind != "lines":
                    raise BadRequest(f"{dataset} is a {snap.kind} dataset; line reads need a "
                                     "lines dataset")
                view = LinesView(self.store, vid, snap)
                self._views[vid] = view
                while len(self._views) > self._max_open:
                    # Dropped views close when the last reader lets go of them.
                    self._views.popitem(last=False)
            return view

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
        d.update({k: v for k, v in snap.meta.items() if k != "line_index"})
        if "line_index" in snap.meta:
            d["line_index"] = snap.meta["line_index"]
        return d
