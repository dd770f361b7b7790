"""JSON views of versions and commits, the same on every surface (HTTP, CLI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quarry.store import CommitResult, Snapshot


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def version_json(version: str, snap: Snapshot, aliases: list[str]) -> dict[str, Any]:
    return {"version": version, "parent": snap.parent, "time": _iso(snap.created),
            "created": snap.created, "size": snap.size, "kind": snap.kind,
            "message": snap.message, "lineage": [dict(x) for x in snap.lineage],
            "aliases": aliases}


def commit_json(res: CommitResult) -> dict[str, Any]:
    snap = res.snapshot
    return {"dataset": snap.dataset, "version": res.version, "parent": snap.parent,
            "kind": snap.kind, "size": snap.size, "created": res.created,
            "status": "created" if res.created else "unchanged",
            "detail": (f"new version {res.version[:12]}" if res.created else
                       f"unchanged: the data equals version {res.version[:12]}; "
                       "no new version was made")}
