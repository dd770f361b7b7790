"""The ``document`` kind: opaque bytes, stored whole (the snapshot service's resources)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from quarry.store import CommitResult, Part, Snapshot, Store

KIND = "document"
DEFAULT_TYPE = "application/octet-stream"
# Room for the manifest and refs when the size is not known in advance.
UNKNOWN_SIZE_RESERVE = 1 << 20


class DocumentWriter:
    """Streams a document into one blob; ``commit`` makes it the new version."""

    def __init__(self, store: Store, name: str, *, message: str = "",
                 size_hint: int | None = None, content_type: str | None = None,
                 lineage: tuple[Mapping[str, str], ...] = ()) -> None:
        store.ensure_space(UNKNOWN_SIZE_RESERVE if size_hint is None else size_hint)
        self._store = store
        self._name = name
        self._message = message
        self._content_type = content_type or DEFAULT_TYPE
        self._lineage = lineage
        self._data = store.blobs.writer()

    def write(self, block: bytes | memoryview) -> None:
        self._data.write(block)

    def abort(self) -> None:
        self._data.abort()

    def commit(self, **kw: Any) -> CommitResult:
        try:
            blob = self._data.commit()
        except BaseException:
            self.abort()
            raise
        snap = Snapshot(dataset=self._name, kind=KIND, parent=None, created=time.time(),
                        size=self._data.size, sha256=blob,
                        parts=(Part("data", blob, self._data.size),), message=self._message,
                        meta={"content_type": self._content_type})
        if self._lineage:
            snap = dataclasses.replace(snap, lineage=self._lineage)
        return self._store.commit(snap, **kw)


def put_document(store: Store, name: str, data: bytes, *, message: str = "",
                 content_type: str | None = None,
                 lineage: tuple[Mapping[str, str], ...] = (), **kw: Any) -> CommitResult:
    w = DocumentWriter(store, name, message=message, size_hint=len(data),
                       content_type=content_type, lineage=lineage)
    w.write(data)
    return w.commit(**kw)
