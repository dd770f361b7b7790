"""The Store: one data folder holding blobs, snapshot manifests and refs."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from quarry.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from quarry.store.atomic import atomic_write_bytes, ensure_free_space
from quarry.store.blobs import BlobStore
from quarry.store.manifest import Snapshot
from quarry.store.refs import RefStore, check_alias_name, check_dataset_name

DEFAULT_HOME = "quarry-data"
MIN_PREFIX = 5
_HEX = re.compile(r"[0-9a-f]{5,64}")
_UNSET = object()


def default_home() -> Path:
    return Path(os.environ.get("QUARRY_HOME", DEFAULT_HOME))


@dataclass(frozen=True)
class CommitResult:
    version: str
    snapshot: Snapshot
    created: bool  # False when the data equalled HEAD's and no version was made


class Store:
    """A data folder. Nothing in it is modified in place; every write is temp+fsync+rename."""

    def __init__(self, root: Path | str | None = None, *, min_free_bytes: int | None = None):
        self.root = Path(root) if root is not None else default_home()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = self.root / "tmp"
        self.blobs = BlobStore(self.root / "blobs", self.tmp_dir)
        self.refs = RefStore(self.root / "refs", self.root / "locks", self.tmp_dir)
        self.manifests = self.root / "manifests"
        self.manifests.mkdir(exist_ok=True)
        env_reserve = os.environ.get("QUARRY_MIN_FREE_BYTES")
        self.min_free_bytes = (
            min_free_bytes if min_free_bytes is not None
            else int(env_reserve) if env_reserve else 64 << 20
        )
        self._load = lru_cache(maxsize=4096)(self._load_uncached)

    # -- space -----------------------------------------------------------------------------
    def ensure_space(self, needed: int) -> None:
        ensure_free_space(self.root, needed, self.min_free_bytes)

    def clean_tmp(self, older_than: float = 3600.0) -> int:
        """Remove temp files left by crashed writers; returns how many were removed."""
        now = time.time()
        n = 0
        for f in self.tmp_dir.iterdir():
            if now - f.stat().st_mtime > older_than:
                f.unlink(missing_ok=True)
                n += 1
        return n

    # -- manifests -------------------------------------------------------------------------
    def _manifest_path(self, version: str) -> Path:
        return self.manifests / f"{version}.json"

    def _load_uncached(self, version: str) -> Snapshot:
        try:
            raw = self._manifest_path(version).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no version {version[:12]} in the store") from None
        return Snapshot.decode(raw)

    def snapshot(self, version: str) -> Snapshot:
        return self._load(version)

    def save_snapshot(self, snap: Snapshot) -> str:
        raw = snap.encode()
        version = snap.id
        path = self._manifest_path(version)
        if not path.exists():
            atomic_write_bytes(path, raw, self.tmp_dir)
        return version

    # -- datasets and versions -------------------------------------------------------------
    def datasets(self) -> list[str]:
        return self.refs.datasets()

    def head(self, dataset: str) -> str | None:
        return self.refs.get(dataset)

    def require_head(self, dataset: str) -> str:
        head = self.refs.get(dataset)
        if head is None:
            raise NotFound(f"no dataset named {dataset!r}")
        return head

    def commit(self, snap: Snapshot, *, expected_parent: object = _UNSET) -> CommitResult:
        """Make ``snap`` the new HEAD of its dataset.

        With ``expected_parent`` (a version id, or None for a new dataset) the commit fails with
        412 if HEAD moved meanwhile (optimistic concurrency); without it, concurrent commits are
        serialised and each is recorded on top of whatever HEAD is when it gets the lock.
        """
        check_dataset_name(snap.dataset)
        with self.refs.lock(snap.dataset):
            head = self.refs.get(snap.dataset)
            if expected_parent is not _UNSET and expected_parent != head:
                raise PreconditionFailed(
                    f"{snap.dataset} is at version {(head or 'nothing')[:12]}, not "
                    f"{str(expected_parent or 'nothing')[:12]}",
                    current=head,
                )
            if head is not None:
                current = self.snapshot(head)
                if current.sha256 == snap.sha256 and current.kind == snap.kind:
                    return CommitResult(head, current, created=False)
            snap = dataclasses.replace(snap, parent=head)
            version = self.save_snapshot(snap)
            self.refs.set_locked(snap.dataset, None, version)
        return CommitResult(version, snap, created=True)

    def history(self, dataset: str, limit: int | None = None) -> list[tuple[str, Snapshot]]:
        out: list[tuple[str, Snapshot]] = []
        version = self.refs.get(dataset)
        while version is not None and (limit is None or len(out) < limit):
            snap = self.snapshot(version)
            out.append((version, snap))
            version = snap.parent
        return out

    def resolve(self, dataset: str, version: str | None = None) -> str:
        """Turn HEAD, an alias, a full id or a unique prefix (≥ 5 hex digits) into an id."""
        head = self.require_head(dataset)
        if version is None or version in ("", "HEAD", "head"):
            return head
        aliases = self.refs.aliases(dataset)
        if version in aliases:
            return aliases[version]
        v = version.lower()
        if not _HEX.fullmatch(v):
            if len(v) < MIN_PREFIX and all(c in "0123456789abcdef" for c in v):
                raise BadRequest(f"version prefix {version!r} is too short: give at least "
                                 f"{MIN_PREFIX} hex digits")
            raise NotFound(f"{dataset} has no version or alias named {version[:80]!r}")
        candidates = {vid for vid, _ in self.history(dataset) if vid.startswith(v)}
        candidates |= {a for a in aliases.values() if a.startswith(v)}
        if not candidates:
            raise NotFound(f"{dataset} has no version {version!r}")
        if len(candidates) > 1:
            raise Conflict(f"version prefix {version!r} of {dataset} is ambiguous: it matches "
                           f"{len(candidates)} versions; give more digits",
                           matches=sorted(candidates)[:10])
        return candidates.pop()

    def aliases(self, dataset: str) -> dict[str, str]:
        self.require_head(dataset)
        return self.refs.aliases(dataset)

    def set_alias(self, dataset: str, alias: str, version: str | None) -> str:
        check_alias_name(alias)
        target = self.resolve(dataset, version)
        with self.refs.lock(dataset):
            self.refs.set_locked(dataset, alias, target)
        return target
