"""Consistency check: re-hash every blob and manifest, follow every ref and parent link.

Reports problems instead of raising: a damaged store is exactly when a check must not crash.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from quarry.errors import QuarryError
from quarry.store.gc import pruned_versions
from quarry.store.manifest import Snapshot
from quarry.store.store import Store


@dataclass(frozen=True)
class Problem:
    what: str  # "blob", "manifest", "ref", "link"
    name: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "name": self.name, "detail": self.detail}


@dataclass(frozen=True)
class FsckReport:
    blobs: int
    manifests: int
    datasets: int
    problems: tuple[Problem, ...]
    temp_files: int  # every temp file, live writers' included
    # Left by writers that died before renaming them: not damage, only wasted space, which
    # the next put or serve reclaims.
    stale_temp_files: int = 0
    stale_temp_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "blobs": self.blobs, "manifests": self.manifests,
                "datasets": self.datasets, "temp_files": self.temp_files,
                "stale_temp_files": self.stale_temp_files,
                "stale_temp_bytes": self.stale_temp_bytes,
                "problems": [p.to_json() for p in self.problems]}


def check(store: Store, *, verify_blobs: bool = True) -> FsckReport:
    problems: list[Problem] = []
    blobs = 0
    for blob in store.blobs.ids():
        blobs += 1
        if verify_blobs:
            try:
                store.blobs.verify(blob)
            except QuarryError as e:
                problems.append(Problem("blob", blob, e.detail))
            except OSError as e:
                problems.append(Problem("blob", blob, f"unreadable: {e}"))
    snaps: dict[str, Snapshot] = {}
    manifests = 0
    for path in sorted(store.manifests.glob("*.json")):
        manifests += 1
        version = path.stem
        try:
            raw = path.read_bytes()
            snap = Snapshot.decode(raw)
        except (QuarryError, OSError) as e:
            problems.append(Problem("manifest", version, f"unreadable: {e}"))
            continue
        if hashlib.sha256(raw).hexdigest() != version:
            problems.append(Problem("manifest", version, "content does not hash to its name"))
            continue
        snaps[version] = snap
        for part in snap.parts:
            if not store.blobs.exists(part.blob):
                problems.append(Problem("manifest", version,
                                        f"{part.role} blob {part.blob[:12]} is missing"))
            elif store.blobs.size(part.blob) != part.size:
                problems.append(Problem("manifest", version,
                                        f"{part.role} blob {part.blob[:12]} has the wrong size"))
        if snap.link is not None:
            try:
                st = os.stat(snap.link.path)
                if (st.st_size, st.st_mtime_ns) != (snap.link.size, snap.link.mtime_ns):
                    problems.append(Problem("link", version,
                                            f"linked file {snap.link.path} changed"))
            except OSError:
                problems.append(Problem("link", version, f"linked file {snap.link.path} is gone"))
    pruned = pruned_versions(store)
    datasets = store.datasets()
    for name in datasets:
        refs = {"HEAD": store.refs.get(name)}
        refs.update(store.refs.aliases(name))
        if refs["HEAD"] is None:
            problems.append(Problem("ref", f"{name} HEAD", _no_head(store, name)))
        for ref, target in refs.items():
            if ref == "HEAD" and target is None:
                continue
            if target is None or target not in snaps:
                problems.append(Problem("ref", f"{name} {ref}",
                                        f"points at {(target or 'nothing')[:12]}, which is "
                                        "missing or damaged"))
        # Walk the history: a missing parent is damage unless gc removed it on purpose.
        cursor: str | None = refs["HEAD"]
        seen: set[str] = set()
        while cursor is not None and cursor in snaps and cursor not in seen:
            seen.add(cursor)
            parent = snaps[cursor].parent
            if parent is not None and parent not in snaps and parent not in pruned:
                problems.append(Problem("manifest", cursor,
                                        f"parent {parent[:12]} of {name} is missing"))
            cursor = parent
    temps = sum(1 for _ in store.tmp_dir.iterdir())
    stale = store.stale_temps()
    return FsckReport(blobs, manifests, len(datasets), tuple(problems), temps, stale.count,
                      stale.bytes)


def _no_head(store: Store, name: str) -> str:
    path = store.refs.head_path(name)
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"{path} is unreadable: {e.strerror or e}"
    return (f"{path} holds no whole version record ({size} bytes; a commit that failed part "
            "way, e.g. on a full disk, can leave this): the dataset cannot be read; the next "
            f"`quarry put {name} FILE` writes HEAD anew, or delete the file")
