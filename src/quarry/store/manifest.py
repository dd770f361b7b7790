"""Snapshot manifests: immutable descriptions of one dataset version, named by their hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from quarry.errors import Corrupt


@dataclass(frozen=True)
class Part:
    """One blob a snapshot is made of, with the role it plays (``data``, ``line-index``...)."""

    role: str
    blob: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "blob": self.blob, "size": self.size}


@dataclass(frozen=True)
class LinkedFile:
    """Data left in place outside the store (``--link``), pinned by size, mtime and hash."""

    path: str
    size: int
    mtime_ns: int
    sha256: str

    def state(self) -> str:
        """"same", "changed" (size or mtime differ from when it was indexed) or "gone"."""
        try:
            st = os.stat(self.path)
        except OSError:
            return "gone"
        return "same" if self.matches(st) else "changed"

    def matches(self, st: os.stat_result) -> bool:
        """Whether a stat of the file shows it as it was indexed (same size and mtime)."""
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns,
                "sha256": self.sha256}


@dataclass(frozen=True)
class Snapshot:
    dataset: str
    kind: str
    parent: str | None
    created: float
    size: int
    sha256: str
    parts: tuple[Part, ...] = ()
    link: LinkedFile | None = None
    message: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    lineage: tuple[Mapping[str, str], ...] = ()

    def part(self, role: str) -> Part:
        for p in self.parts:
            if p.role == role:
                return p
        raise Corrupt(f"snapshot of {self.dataset} has no {role!r} part")

    def has_part(self, role: str) -> bool:
        return any(p.role == role for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "dataset": self.dataset,
            "kind": self.kind,
            "parent": self.parent,
            "created": self.created,
            "size": self.size,
            "sha256": self.sha256,
            "parts": [p.to_json() for p in self.parts],
            "link": self.link.to_json() if self.link else None,
            "message": self.message,
            "meta": dict(self.meta),
            "lineage": [dict(x) for x in self.lineage],
        }

    def encode(self) -> bytes:
        # Sorted keys make the encoding canonical, so equal manifests get equal ids.
        return orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)

    @property
    def id(self) -> str:
        return self.id_of(self.encode())

    @staticmethod
    def id_of(raw: bytes) -> str:
        """The version id of an encoded manifest."""
        return hashlib.sha256(raw).hexdigest()

    @classmethod
    def decode(cls, raw: bytes) -> Snapshot:
        try:
            d = orjson.loads(raw)
            link = d.get("link")
            return cls(
                dataset=d["dataset"],
                kind=d["kind"],
                parent=d["parent"],
                created=float(d["created"]),
                size=int(d["size"]),
                sha256=d["sha256"],
                parts=tuple(Part(p["role"], p["blob"], int(p["size"])) for p in d["parts"]),
                link=LinkedFile(**link) if link else None,
                message=d.get("message", ""),
                meta=d.get("meta", {}),
                lineage=tuple(d.get("lineage", ())),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise Corrupt(f"unreadable snapshot manifest: {e}") from None
