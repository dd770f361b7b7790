"""The event journal: an append-only file of change events, one JSON object per line.

Every commit and alias move appends a line here, whichever process made it (a server, the
CLI, a pipeline). Publishers (the ZeroMQ bus, the HTTP event stream) tail this one file, so
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

# Event names. ``failed`` is published by pipelines; the store publishes the other two.
COMMIT = "commit"
ALIAS = "alias"
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
    """Appends and reads events. Appends take an exclusive flock, so lines never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: Event) -> None:
        line = event.encode() + b"\n"
        # Not fsync'ed: an event is a notification, not data. A crash can lose the last
        # events but never a version; pipelines catch up from HEADs when they start.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)

    def end(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, offset: int, max_bytes: int = 1 << 20) -> tuple[list[tuple[int, Event]], int]:
        """Complete events after ``offset``, each with the offset just past it; and the new
        offset. A torn or unreadable line (a writer killed mid-append) is skipped."""
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < offset:
                    offset = 0  # the journal was replaced (e.g. compacted): start over
                f.seek(offset)
                raw = f.read(max_bytes)
        except FileNotFoundError:
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
