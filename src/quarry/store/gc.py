"""Garbage collection: drop versions no policy retains, then blobs no kept version references.

Policy: per dataset, the last ``keep`` versions from HEAD plus every version an alias points
at. Dry run by default. Files younger than ``grace`` seconds are never deleted, so a writer
that has stored its blobs but not yet committed (or a manifest being written) is safe; the
commit itself re-checks its blobs under the shared gc lock that gc holds exclusively. Temp
files go when their writer is dead (``tempfiles``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from quarry.errors import BadRequest, NotFound
from quarry.store.store import Store
from quarry.store.tempfiles import remove_stale

GC_LOG = "gc.log"


@dataclass(frozen=True)
class GcReport:
    applied: bool
    keep: int
    kept_versions: int
    dropped_versions: tuple[str, ...]
    dropped_blobs: tuple[str, ...]
    freed_bytes: int
    temp_files: int
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {"applied": self.applied, "keep": self.keep, "kept_versions": self.kept_versions,
                "dropped_versions": list(self.dropped_versions),
                "dropped_blobs": len(self.dropped_blobs), "freed_bytes": self.freed_bytes,
                "temp_files": self.temp_files, "notes": list(self.notes)}


def collect(store: Store, *, keep: int = 10, apply: bool = False,
            grace: float = 3600.0) -> GcReport:
    if keep < 1:
        raise BadRequest(f"gc must keep at least the last version of each dataset, not {keep}")
    now = time.time()
    with store.gc_lock(exclusive=True):
        retained: set[str] = set()
        notes: list[str] = []
        for name in store.datasets():
            try:
                retained.update(v for v, _ in store.history(name, limit=keep))
            except NotFound as e:
                notes.append(f"{name}: {e.detail}")
            retained.update(store.refs.aliases(name).values())
        live_blobs: set[str] = set()
        for version in retained:
            try:
                live_blobs.update(p.blob for p in store.snapshot(version).parts)
            except NotFound:
                notes.append(f"kept version {version[:12]} has no manifest (run fsck)")
        dropped_versions = []
        for path in store.manifests.glob("*.json"):
            version = path.stem
            if version not in retained and now - path.stat().st_mtime >= grace:
                dropped_versions.append(version)
        dropped_blobs = []
        freed = 0
        for blob in store.blobs.ids():
            if blob in live_blobs:
                continue
            st = store.blobs.path(blob).stat()
            if now - st.st_mtime >= grace:
                dropped_blobs.append(blob)
                freed += st.st_size
        # A temp file goes when its writer is dead, whatever its age (a live upload may
        # take longer than any grace).
        temps = store.stale_temps()
        if apply:
            # The log first: fsck then knows these versions were removed on purpose.
            if dropped_versions:
                entry = {"time": now, "versions": sorted(dropped_versions)}
                with open(store.root / GC_LOG, "ab") as log:
                    log.write(orjson.dumps(entry) + b"\n")
            for version in dropped_versions:
                store._manifest_path(version).unlink(missing_ok=True)
            store.drop_caches()
            store._ids.clear()
            for blob in dropped_blobs:
                store.blobs.path(blob).unlink(missing_ok=True)
            remove_stale(temps)
    return GcReport(apply, keep, len(retained), tuple(sorted(dropped_versions)),
                    tuple(sorted(dropped_blobs)), freed, temps.count, tuple(notes))


def pruned_versions(store: Store) -> set[str]:
    """Versions gc removed on purpose (their absence from a history is not damage)."""
    out: set[str] = set()
    try:
        raw = (store.root / GC_LOG).read_bytes()
    except FileNotFoundError:
        return out
    for line in raw.splitlines():
        try:
            out.update(orjson.loads(line)["versions"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return out
