"""The kind registry: how each dataset kind takes a new version from a byte stream and gives
its data back. Every surface that writes or reads whole versions (HTTP PUT/GET, the ZeroMQ
endpoint, pipelines, ``quarry put --kind``) goes through here, so a new kind plugs in by
adding one ``Kind`` to ``KINDS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from quarry.datasets import document, lines
from quarry.errors import BadRequest, Conflict, Unavailable
from quarry.store import CommitResult, Snapshot, Store

READ_PIECE = 1 << 20


class VersionWriter(Protocol):
    """Takes the new version's bytes in order; ``commit`` makes it, ``abort`` drops it."""

    def write(self, block: bytes | memoryview) -> None: ...
    def commit(self, **kw: Any) -> CommitResult: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class WriteOptions:
    message: str = ""
    size_hint: int | None = None
    content_type: str | None = None
    lineage: tuple[Mapping[str, str], ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)  # kind-specific (e.g. index mode)


@dataclass(frozen=True)
class Data:
    """One version's data as bytes: a file to send as is, or blocks to stream."""

    media_type: str
    size: int | None
    path: Path | None = None
    blocks: Callable[[], Iterator[bytes]] | None = None

    def iter_bytes(self, piece: int = READ_PIECE) -> Iterator[bytes]:
        if self.path is not None:
            with open(self.path, "rb") as f:
                while block := f.read(piece):
                    yield block
        elif self.blocks is not None:
            yield from self.blocks()

    def read_all(self) -> bytes:
        return b"".join(self.iter_bytes())


@dataclass(frozen=True)
class Kind:
    name: str
    writer: Callable[[Store, str, WriteOptions], VersionWriter]
    data: Callable[[Store, Snapshot], Data]


def _lines_writer(store: Store, name: str, opts: WriteOptions) -> VersionWriter:
    return lines.LinesWriter(store, name, mode=opts.params.get("index", "auto"),
                             message=opts.message, size_hint=opts.size_hint,
                             lineage=opts.lineage)


def _lines_data(store: Store, snap: Snapshot) -> Data:
    link = snap.link
    if link is not None:
        try:
            st = os.stat(link.path)
        except OSError:
            raise Unavailable(f"the linked file of {snap.dataset} is gone") from None
        if (st.st_size, st.st_mtime_ns) != (link.size, link.mtime_ns):
            raise Unavailable(f"the linked file of {snap.dataset} changed since it was indexed")
        return Data("text/plain; charset=utf-8", snap.size, Path(link.path))
    return Data("text/plain; charset=utf-8", snap.size, store.blobs.path(snap.part("data").blob))


def _document_writer(store: Store, name: str, opts: WriteOptions) -> VersionWriter:
    return document.DocumentWriter(store, name, message=opts.message, size_hint=opts.size_hint,
                                   content_type=opts.content_type, lineage=opts.lineage)


def _document_data(store: Store, snap: Snapshot) -> Data:
    return Data(str(snap.meta.get("content_type", document.DEFAULT_TYPE)), snap.size,
                store.blobs.path(snap.part("data").blob))


KINDS: dict[str, Kind] = {
    k.name: k for k in (
        Kind(lines.KIND, _lines_writer, _lines_data),
        Kind(document.KIND, _document_writer, _document_data),
    )
}
# Kinds Quarry knows but that cannot yet take versions as a byte stream.
KNOWN_KINDS = frozenset({"lines", "records", "document"})


def get_kind(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is not None:
        return kind
    if name in KNOWN_KINDS:
        raise BadRequest(f"{name} datasets cannot be written or read whole through this "
                         f"surface yet; supported kinds: {', '.join(sorted(KINDS))}")
    raise BadRequest(f"unknown dataset kind {name[:40]!r}; supported kinds: "
                     f"{', '.join(sorted(KINDS))}")


def kind_for_put(store: Store, dataset: str, requested: str | None, default: str) -> Kind:
    """The kind a new version of ``dataset`` is written as: the requested one, else the
    dataset's current kind, else ``default``. A dataset keeps its kind across versions."""
    head = store.head(dataset)
    current = store.snapshot(head).kind if head is not None else None
    if requested and current and requested != current:
        raise Conflict(f"{dataset} is a {current} dataset; a version of another kind "
                       f"({requested}) would break its readers. PUT it under a new name")
    return get_kind(requested or current or default)


def read_data(store: Store, snap: Snapshot) -> Data:
    try:
        return get_kind(snap.kind).data(store, snap)
    except FileNotFoundError:
        raise Unavailable(f"the data of {snap.dataset} is missing from the store") from None


def put_bytes(store: Store, dataset: str, data: bytes, *, kind: str | None = None,
              default_kind: str = "document", opts: WriteOptions | None = None,
              **commit_kw: Any) -> CommitResult:
    """Write ``data`` whole as a new version (small payloads: ZeroMQ, pipelines, tests)."""
    k = kind_for_put(store, dataset, kind, default_kind)
    o = opts or WriteOptions()
    if o.size_hint is None:
        o = WriteOptions(o.message, len(data), o.content_type, o.lineage, o.params)
    w = k.writer(store, dataset, o)
    try:
        w.write(data)
    except BaseException:
        w.abort()
        raise
    return w.commit(**commit_kw)
