"""The event journal: an append-only file of change events, one JSON object per line.

Every commit and alias move appends a line here, whichever process made it (a server, the
CLI, a pipeline). Publishers (the ZeroMQ bus, the HTTP event stream) tail this journal, so
a change is published once, in commit order, even when the writer knew nothing of them.
The byte offset just past a line is that event's position: a reader resumes from it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

# A segment of the journal is closed at this size; the newest KEEP_SEGMENTS are kept
# (about a million events each).
SEGMENT_BYTES = 64 << 20
KEEP_SEGMENTS = 4

# Event names. ``failed`` is published by pipelines; the store publishes the others.
COMMIT = "commit"
ALIAS = "alias"
DELETED = "deleted"  # a dataset's refs were removed (its versions stay until gc)
FAILED = "failed"


@dataclass(frozen=True)
class Event:
    dataset: str
    event: str
    version: str | None = None
    parent: str | None = None
    size: int | None = None
    time: float = field(default_factory=time.time)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"{self.dataset} {self.event}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dataset": self.dataset, "event": self.event,
                             "version": self.version, "parent": self.parent,
                             "size": self.size, "time": self.time}
        d.update(self.extra)
        return d

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json())

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        core = {"dataset", "event", "version", "parent", "size", "time"}
        return cls(dataset=str(d["dataset"]), event=str(d["event"]), version=d.get("version"),
                   parent=d.get("parent"), size=d.get("size"), time=float(d["time"]),
                   extra={k: v for k, v in d.items() if k not in core})


class Journal:
    """Appends and reads events. Appends take an exclusive flock, so lines never interleave.

    The journal is a series of segments so that it does not grow forever: ``journal.jsonl``
    holds offsets from 0, ``journal.<base>.jsonl`` those from ``base`` on. Once a segment
    reaches ``segment_bytes`` the next append starts a new one at base = the full
    segment's base + size (so offsets stay one global sequence) and the oldest segments
    beyond ``keep`` are deleted. A reader whose offset fell into a deleted segment resumes
    at the oldest one kept.
    """

    def __init__(self, path: Path, *, segment_bytes: int = SEGMENT_BYTES,
                 keep: int = KEEP_SEGMENTS) -> None:
        self.path = path  # the first segment, base 0
        self.segment_bytes = segment_bytes
        self.keep = max(1, keep)
        self._active: tuple[int, Path] = (0, path)
        path.parent.mkdir(parents=True, exist_ok=True)

    def _segment(self, base: int) -> Path:
        if base == 0:
            return self.path
        return self.path.with_name(f"{self.path.stem}.{base:020d}{self.path.suffix}")

    def segments(self) -> list[tuple[int, Path]]:
        """(base offset, file) of every segment kept, oldest first."""
        out = [(0, self.path)] if self.path.exists() else []
        stem, suffix = self.path.stem, self.path.suffix
        for p in self.path.parent.glob(f"{stem}.*{suffix}"):
            mid = p.name[len(stem) + 1 : -len(suffix)]
            if mid.isdigit():
                out.append((int(mid), p))
        return sorted(out)

    def append(self, event: Event) -> tuple[int, int]:
        """Append ``event``; returns its span in the journal: the offsets of its line's start
        and of the byte just past it."""
        line = event.encode() + b"\n"
        # Not fsync'ed: an event is a notification, not data. A crash can lose the last
        # events but never a version; pipelines catch up from HEADs when they start.
        base, path = self._active
        for _ in range(64):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size < self.segment_bytes:
                    os.write(fd, line)
                    self._active = (base, path)
                    return base + size, base + size + len(line)
            finally:
                os.close(fd)
            # Full: nobody writes to it again, so its end is the next segment's base,
            # whichever process gets here first.
            base, path = base + size, self._segment(base + size)
            if not path.exists():
                self._prune(base)
        raise RuntimeError(f"event journal {self.path.parent}: could not find its last segment")

    def _prune(self, newest: int) -> None:
        older = [seg for seg in self.segments() if seg[0] < newest]
        for _, p in older[: max(0, len(older) - (self.keep - 1))]:
            p.unlink(missing_ok=True)

    def end(self) -> int:
        return _end_of(self.segments())

    def _locate(self, offset: int) -> tuple[int, int, Path | None] | None:
        """(offset, base, file) of the segment to read ``offset`` from, the offset moved to
        the oldest event kept if it was pruned, or to the end if it is past it; no file when
        the offset is the journal's end, so a polling reader costs one ``stat``."""
        base, path = self._active
        if base <= offset:
            # The common case, a tail reader: one stat instead of listing the segments.
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = -1
            if offset - base < size:
                return offset, base, path
            if offset - base == size < self.segment_bytes:
                return offset, base, None  # at the end: nothing new to read
        segs = self.segments()
        if not segs:
            return None
        self._active = segs[-1]
        end = _end_of(segs)
        if offset > end:
            # Past the end (a made-up offset, or one from a journal since replaced): from
            # now on. Resuming at the oldest event would replay the whole history.
            return end, segs[-1][0], None
        if offset < segs[0][0]:
            # Older events were pruned: resume at the oldest event kept.
            offset = segs[0][0]
        base, path = [seg for seg in segs if seg[0] <= offset][-1]
        return offset, base, path

    def read(self, offset: int, max_bytes: int = 1 << 20) -> tuple[list[tuple[int, Event]], int]:
        """Complete events after ``offset``, each with the offset just past it; and the new
        offset. A torn or unreadable line (a writer killed mid-append) is skipped."""
        found = self._locate(offset)
        if found is None:
            return [], offset
        offset, base, path = found
        if path is None:
            return [], offset
        try:
            with open(path, "rb") as f:
                f.seek(offset - base)
                raw = f.read(max_bytes)
        except FileNotFoundError:  # pruned meanwhile: the next read starts at the oldest
            return [], offset
        cut = raw.rfind(b"\n")
        if cut < 0:
            return [], offset
        out: list[tuple[int, Event]] = []
        pos = offset
        for line in raw[: cut + 1].splitlines(keepends=True):
            pos += len(line)
            try:
                out.append((pos, Event.from_json(orjson.loads(line))))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return out, pos


def _end_of(segs: list[tuple[int, Path]]) -> int:
    """The offset just past the last event of the journal made of ``segs``."""
    if not segs:
        return 0
    base, path = segs[-1]
    try:
        return base + path.stat().st_size
    except FileNotFoundError:
        return base
