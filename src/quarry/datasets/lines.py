"""The ``lines`` kind: any text file, read by line number."""

from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from quarry.errors import BadRequest, NotFound, OutOfRange, Unavailable
from quarry.index.line_index import (
    SCAN_BLOCK,
    LineIndex,
    LineIndexBuilder,
    LineIndexInfo,
    build_line_index_from_file,
    choose_mode,
)
from quarry.store import CommitResult, LinkedFile, Part, Snapshot, Store

KIND = "lines"
MAX_LINE_NUMBER = (1 << 63) - 1
Progress = Callable[[int], None]


def parse_line_number(raw: str, base: int = 1) -> int:
    """User line number (``base``-numbered, decimal) to a 0-based index; BadRequest if malformed."""
    if not raw or not raw.isdigit() or not raw.isascii():
        raise BadRequest(f"line number must be a {'positive' if base else 'non-negative'} "
                         f"integer, got {raw[:40]!r}")
    # The length first: int() of a huge digit string is slow (and refused past 4300 digits).
    if len(raw) > 20 or (n := int(raw)) > MAX_LINE_NUMBER:
        raise BadRequest(f"line number {raw[:40]} is beyond 2^63-1")
    if n < base:
        raise BadRequest(f"line numbers start at {base}, got {n}")
    return n - base


def _index_space_estimate(size: int) -> int:
    # Lines average well over 16 bytes in real text; 8-byte offsets then cost < size / 2.
    return size // 2 + (1 << 20)


def _snapshot(name: str, size: int, sha: str, info: LineIndexInfo, parts: tuple[Part, ...],
              link: LinkedFile | None, message: str, source: str | None) -> Snapshot:
    meta: dict[str, Any] = {"lines": info.lines, "line_index": info.to_json()}
    if source:
        meta["source"] = source
    return Snapshot(dataset=name, kind=KIND, parent=None, created=time.time(), size=size,
                    sha256=sha, parts=parts, link=link, message=message, meta=meta)


def put_lines(store: Store, name: str, path: Path | str, *, link: bool = False,
              mode: str = "auto", message: str = "", progress: Progress | None = None,
              expected_parent: object = None, check_parent: bool = False) -> CommitResult:
    """Add a text file as a new version of ``name``: copied into the store, or linked in place."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    if not path.is_file():
        raise BadRequest(f"not a regular file: {path}")
    index_mode = choose_mode(mode, st.st_size)
    store.ensure_space(_index_space_estimate(st.st_size) + (0 if link else st.st_size))
    kw: dict[str, Any] = {"expected_parent": expected_parent} if check_parent else {}

    with store.blobs.writer() as idx:
        if link:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                info = build_line_index_from_file(
                    f, idx.write, mode=index_mode, size_hint=st.st_size,
                    on_block=digest.update, progress=progress)
            after = path.stat()
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise Unavailable(f"{path} changed while it was being indexed; try again "
                                  "once it is no longer written to")
            sha = digest.hexdigest()
            linked = LinkedFile(str(path.resolve()), st.st_size, st.st_mtime_ns, sha)
            parts: tuple[Part, ...] = (Part("line-index", idx.commit(), idx.size),)
            snap = _snapshot(name, st.st_size, sha, info, parts, linked, message, path.name)
            return store.commit(snap, **kw)
        with store.blobs.writer() as data, open(path, "rb") as f:
            src = f.fileno()
            info = build_line_index_from_file(
                f, idx.write, mode=index_mode, size_hint=st.st_size,
                on_block=lambda block: data.copy_block(src, block), progress=progress)
            data_id = data.commit()
            parts = (Part("data", data_id, data.size), Part("line-index", idx.commit(), idx.size))
        snap = _snapshot(name, data.size, data_id, info, parts, None, message, path.name)
        return store.commit(snap, **kw)


class LinesWriter:
    """Builds a new lines version from blocks written in order (an HTTP body, stdin, a pipe):
    the data and its line index are streamed into blobs; ``commit`` makes the version."""

    def __init__(self, store: Store, name: str, *, mode: str = "auto", message: str = "",
                 size_hint: int | None = None,
                 lineage: tuple[Mapping[str, str], ...] = ()) -> None:
        self._store = store
        self._name = name
        self._message = message
        self._lineage = lineage
        index_mode = choose_mode(mode, size_hint)
        store.ensure_space(SCAN_BLOCK if size_hint is None
                           else size_hint + _index_space_estimate(size_hint))
        self._idx = store.blobs.writer()
        self._data = store.blobs.writer()
        self._builder = LineIndexBuilder(self._idx.write, mode=index_mode, size_hint=size_hint)

    def write(self, block: bytes | memoryview) -> None:
        self._data.write(block)
        self._builder.feed(block)

    def abort(self) -> None:
        self._idx.abort()
        self._data.abort()

    def commit(self, **kw: Any) -> CommitResult:
        try:
            info = self._builder.finish()
            data_id = self._data.commit()
            parts = (Part("data", data_id, self._data.size),
                     Part("line-index", self._idx.commit(), self._idx.size))
        except BaseException:
            self.abort()
            raise
        snap = _snapshot(self._name, self._data.size, data_id, info, parts, None,
                         self._message, None)
        if self._lineage:
            snap = dataclasses.replace(snap, lineage=self._lineage)
        return self._store.commit(snap, **kw)


def put_lines_stream(store: Store, name: str, blocks: Iterable[bytes], *, mode: str = "auto",
                     message: str = "", size_hint: int | None = None,
                     expected_parent: object = None, check_parent: bool = False,
                     lineage: tuple[Mapping[str, str], ...] = ()) -> CommitResult:
    """Add text arriving in blocks (an HTTP body, stdin) as a new version of ``name``."""
    kw: dict[str, Any] = {"expected_parent": expected_parent} if check_parent else {}
    w = LinesWriter(store, name, mode=mode, message=message, size_hint=size_hint,
                    lineage=lineage)
    try:
        for block in blocks:
            w.write(block)
    except BaseException:
        w.abort()
        raise
    return w.commit(**kw)


class LinesView:
    """One ``lines`` snapshot opened for reading: data and offsets memory-mapped."""

    def __init__(self, store: Store, version: str, snap: Snapshot) -> None:
        if snap.kind != KIND:
            raise BadRequest(f"{snap.dataset} is a {snap.kind} dataset, not lines")
        self.version = version
        self.snapshot = snap
        self.dataset = snap.dataset
        self.info = LineIndexInfo.from_json(snap.meta["line_index"])
        self.lines = self.info.lines
        self.link = snap.link
        data_path = Path(snap.link.path) if snap.link else store.blobs.path(snap.part("data").blob)
        self._data_path = data_path
        self._linked: int | None = None
        self._path_checked = -PATH_RECHECK
        if snap.link is not None:
            try:
                # Kept open while the view lives: each read checks (fstat) the very file
                # that is mapped.
                self._linked = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                self._unavailable("gone")
            weakref.finalize(self, os.close, self._linked)
        self.check()
        self._data: mmap.mmap | bytes = _map(data_path, self._linked)
        self._offsets = _map(store.blobs.path(snap.part("line-index").blob))
        self.index = LineIndex(self.info, memoryview(self._offsets), self._data)

    def check(self) -> None:
        """For linked files: refuse to serve once the file no longer is what was indexed."""
        link = self.link
        if link is None or self._linked is None:
            return
        # The mapped file itself, on every read: a change in place (a truncation would crash
        # a read of the mapping) or a delete shows at once, for half the cost of a stat().
        st = os.fstat(self._linked)
        if st.st_nlink == 0 or not link.matches(st):
            self._unavailable("changed" if st.st_nlink else link.state())
        # A file renamed over the path leaves the mapped one intact; that is seen within
        # PATH_RECHECK seconds.
        now = time.monotonic()
        if now - self._path_checked >= PATH_RECHECK:
            state = link.state()
            if state != "same":
                self._unavailable(state)
            self._path_checked = now

    def _unavailable(self, state: str) -> NoReturn:
        if state == "gone":
            raise Unavailable(f"the linked file of {self.dataset} is gone; re-add it with "
                              "`quarry put --link`")
        raise Unavailable(f"the linked file of {self.dataset} changed since it was indexed "
                          f"(size or mtime differ); re-add it with `quarry put --link`")

    def line(self, i: int, base: int = 0) -> bytes:
        """0-based line ``i``; OutOfRange past the end, whose message numbers lines from
        ``base`` as the caller's user does (only the message: ``i`` is always 0-based)."""
        if i >= self.lines:
            raise OutOfRange(f"line {i + base} is beyond the end of {self.dataset} "
                             f"({self.lines} lines)", lines=self.lines)
        if self.link is not None:
            self.check()
        return self.index.line(i)

    def describe(self) -> dict[str, Any]:
        return {"lines": self.lines, "index": self.info.to_json(),
                "linked": self.link is not None}


# Mappings up to this size are pre-faulted (MAP_POPULATE): random line reads otherwise take a
# page-table fault on the first touch of every page in every worker, even when the file is in
# the page cache. Bigger files fault in as they are read.
POPULATE_MAX = 8 << 30
# How often a linked file's path is stat()ed to see whether another file took its name.
PATH_RECHECK = 1.0


def _map(path: Path, fd: int | None = None) -> mmap.mmap | bytes:
    """``path`` mapped read-only; through ``fd`` when it is already open (left open)."""
    if fd is None:
        with open(path, "rb") as f:
            return _map(path, f.fileno())
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    populate = getattr(mmap, "MAP_POPULATE", 0) if size <= POPULATE_MAX else 0
    return mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
