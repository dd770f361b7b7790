"""The Store: one data folder holding blobs, snapshot manifests and refs."""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import fcntl
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from quarry.errors import BadRequest, Conflict, NotFound, PreconditionFailed, QuarryError
from quarry.store.atomic import atomic_write_bytes, ensure_free_space, fsync_dir, fsync_path
from quarry.store.blobs import BlobStore
from quarry.store.commitlog import INLINE_MAX, INLINE_TOTAL, CommitLog, Record, boot_id
from quarry.store.journal import ALIAS, COMMIT, DELETED, Event, Journal
from quarry.store.manifest import Snapshot
from quarry.store.refs import RefStore, check_alias_name, check_dataset_name
from quarry.store.tempfiles import Stale, find_stale, remove_stale

DEFAULT_HOME = "quarry-data"
MIN_PREFIX = 5
_HEX = re.compile(r"[0-9a-f]{5,64}")
_UNSET = object()


def default_home() -> Path:
    return Path(os.environ.get("QUARRY_HOME", DEFAULT_HOME))


@dataclass(frozen=True)
class _Pending:
    """A commit's log record on its way to the disk, and files to fsync if it had none."""

    log: CommitLog
    ticket: tuple[int, int] | None
    loose: list[Path]

    def finish(self) -> None:
        if self.ticket is not None:
            self.log.wait(self.ticket)
        for path in self.loose:
            fsync_path(path)
        for folder in {p.parent for p in self.loose}:
            fsync_dir(folder)


def _durable_already() -> None:
    pass


@dataclass(frozen=True)
class CommitResult:
    version: str
    snapshot: Snapshot
    created: bool  # False when the data equalled HEAD's and no version was made
    # Returns once the commit is on disk: at once, unless ``commit(wait=False)`` made it.
    wait_durable: Callable[[], None] = field(default=_durable_already, compare=False,
                                             repr=False)


class Store:
    """A data folder. Nothing in it is modified in place; every write is temp+fsync+rename.

    ``durable=False`` (or ``QUARRY_FSYNC=0``) skips the fsyncs: writes stay atomic, so a killed
    process never leaves a half-made version, but a power loss may lose the latest ones (the
    guarantee git gives by default). Each fsync costs milliseconds on many disks. A durable
    store makes a commit durable with one append to its commit log (``commitlog``) instead
    of fsyncing each file it wrote, and replays that log after a power loss.
    """

    def __init__(self, root: Path | str | None = None, *, min_free_bytes: int | None = None,
                 durable: bool | None = None, create: bool = True):
        self.root = Path(root) if root is not None else default_home()
        if self.root.exists() and not self.root.is_dir():
            raise BadRequest(f"data folder {self.root} is a file, not a folder")
        if not create and not (self.root / "manifests").is_dir():
            # A reader with a mistyped --data must hear so, not get an empty store made there
            # (an empty folder is an empty store).
            if not self.root.exists():
                raise NotFound(f"data folder {self.root} does not exist (a put or serve "
                               "creates one)")
            if any(self.root.iterdir()):
                raise NotFound(f"{self.root} is not a Quarry data folder (it has no "
                               "manifests/); check --data or QUARRY_HOME")
        self.root.mkdir(parents=True, exist_ok=True)
        if durable is None:
            durable = os.environ.get("QUARRY_FSYNC", "1").lower() not in ("0", "false", "no")
        self.durable = durable
        self.tmp_dir = self.root / "tmp"
        self.blobs = BlobStore(self.root / "blobs", self.tmp_dir, durable=durable)
        self.refs = RefStore(self.root / "refs", self.root / "locks", self.tmp_dir,
                             durable=durable)
        self.manifests = self.root / "manifests"
        self.manifests.mkdir(exist_ok=True)
        env_reserve = os.environ.get("QUARRY_MIN_FREE_BYTES")
        self.min_free_bytes = (
            min_free_bytes if min_free_bytes is not None
            else int(env_reserve) if env_reserve else 64 << 20
        )
        self._load = lru_cache(maxsize=4096)(self._load_uncached)
        # The snapshot a commit just wrote is the next commit's "is it unchanged?" check.
        self._fresh: tuple[str, Snapshot] | None = None
        self._ids: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.journal = Journal(self.root / "events" / "journal.jsonl")
        # Linux names each boot; without that the log cannot tell a power loss from a
        # process that is still running, so such systems fsync every file instead.
        self.log = CommitLog(self.root / "wal" / "commits.log") if durable and boot_id() else None
        if self.log is not None:
            self.blobs.defer_upto = INLINE_MAX  # small blobs travel in the commit record
            if self.log.needs_replay():
                self._replay()
        # Called (in the committing thread) after an event is journaled; e.g. to wake a
        # publisher at once instead of at its next poll. Errors in them never fail a write.
        self.listeners: list[Callable[[Event], None]] = []
        # The same, told where the event lies in the journal (start and end offsets), so a
        # publisher tailing the journal can take an event of this process without reading it.
        self.journal_listeners: list[Callable[[Event, int, int], None]] = []

    # -- events ----------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        self._notify(event, self.journal.append(event))

    def _notify(self, event: Event, span: tuple[int, int]) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as e:  # a listener's bug must not undo a finished commit
                print(f"quarry: event listener failed: {e!r}", file=sys.stderr)
        for positioned in list(self.journal_listeners):
            try:
                positioned(event, *span)
            except Exception as e:
                print(f"quarry: event listener failed: {e!r}", file=sys.stderr)

    @contextmanager
    def gc_lock(self, *, exclusive: bool = False) -> Iterator[None]:
        """Commits hold this shared; ``gc`` holds it exclusive, so it never deletes a blob
        between a writer's check that the blob exists and the commit that references it."""
        fd = os.open(self.refs.locks / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def commit_seconds(self) -> float:
        """What a small commit waits for the disk, as recently measured: 0 without fsync,
        the commit log's fdatasync time with it, inf when each file is fsynced."""
        if not self.durable:
            return 0.0
        return self.log.sync_seconds if self.log is not None else float("inf")

    # -- space -----------------------------------------------------------------------------
    def ensure_space(self, needed: int) -> None:
        ensure_free_space(self.root, needed, self.min_free_bytes)

    def stale_temps(self) -> Stale:
        """Temp files of writers that died (killed, crashed) before renaming them."""
        return find_stale(self.tmp_dir)

    def clean_tmp(self) -> Stale:
        """Remove the temp files of dead writers (never a live writer's, in any process)."""
        stale = self.stale_temps()
        remove_stale(stale)
        return stale

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
        fresh = self._fresh
        if fresh is not None and fresh[0] == version:
            return fresh[1]
        return self._load(version)

    def save_snapshot(self, snap: Snapshot) -> str:
        return self._save(snap)[0]

    def _save(self, snap: Snapshot) -> tuple[str, bytes]:
        raw = snap.encode()
        version = Snapshot.id_of(raw)
        self._write_manifest(version, raw)
        return version, raw

    def _write_manifest(self, version: str, raw: bytes) -> None:
        path = self._manifest_path(version)
        if not path.exists():
            atomic_write_bytes(path, raw, self.tmp_dir,
                               durable=self.durable and self.log is None)

    def drop_caches(self) -> None:
        """Forget cached manifests (gc calls this after deleting some)."""
        self._load.cache_clear()
        self._fresh = None

    # -- durability ------------------------------------------------------------------------
    def _log_commit(self, snap: Snapshot, version: str, raw: bytes) -> _Pending:
        """Start putting a commit's manifest, small blobs and HEAD on disk as one commit-log
        record; ``_Pending.finish`` waits for it, once the commit's files are written."""
        assert self.log is not None
        inline: dict[str, bytes] = {}
        loose: list[Path] = []
        total = 0
        for part in snap.parts:
            if part.size > INLINE_MAX or part.blob in inline:
                continue  # big blobs were fsync'ed by their writer
            if total + part.size <= INLINE_TOTAL:
                inline[part.blob] = self.blobs.recent_bytes(part.blob)
                total += part.size
            else:
                loose.append(self.blobs.path(part.blob))
        ticket = self.log.write(Record(snap.dataset, version, raw, tuple(inline.items())))
        if ticket is None:  # a manifest too big for the log: fsync the files
            loose += [self.blobs.path(b) for b in inline]
            loose += [self._manifest_path(version), self.refs.head_path(snap.dataset)]
        return _Pending(self.log, ticket, loose)

    def _replay(self) -> None:
        """After a power loss: restore what the logged commits wrote but the disk lost."""
        assert self.log is not None
        with self.log.replaying() as records:
            if records is None:
                return  # another process replayed it first
            last: dict[str, str] = {}
            for rec in records:
                for blob_id, data in rec.blobs:
                    self.blobs.restore(blob_id, data)
                path = self._manifest_path(rec.version)
                if not path.is_file() or path.read_bytes() != rec.manifest:
                    atomic_write_bytes(path, rec.manifest, self.tmp_dir, durable=False)
                last[rec.dataset] = rec.version
            # The last logged commit of a dataset is its latest acknowledged one: a HEAD
            # past it was never acknowledged (its record did not reach the disk), and a HEAD
            # before it lost its last appends.
            for dataset, version in last.items():
                if self.refs.get(dataset) != version:
                    self.refs.set_locked(dataset, None, version, sync=False)
            for dataset in self.refs.datasets():
                if dataset not in last:
                    self._repair_head(dataset)
            # replaying() now syncs the file system and starts a generation in this boot.

    def _repair_head(self, dataset: str) -> None:
        """A HEAD written in the page cache before the crash may name a version whose files
        did not reach the disk (never acknowledged): fall back to the last whole one."""
        for version in reversed(self.refs.head_records(dataset)):
            try:
                snap = self._load_uncached(version)
            except QuarryError:
                continue
            if all(self.blobs.path(p.blob).is_file()
                   and self.blobs.size(p.blob) == p.size for p in snap.parts):
                if version != self.refs.get(dataset):
                    self.refs.set_locked(dataset, None, version, sync=False)
                return

    # -- datasets and versions -------------------------------------------------------------
    def datasets(self) -> list[str]:
        return self.refs.datasets()

    def heads(self) -> tuple[dict[str, Snapshot], dict[str, str]]:
        """Each dataset's HEAD snapshot, and why the others cannot be read: a damaged ref or
        manifest makes one dataset unreadable, and a server starts with the rest."""
        ok: dict[str, Snapshot] = {}
        bad: dict[str, str] = {}
        for name in self.datasets():
            try:
                head = self.refs.get(name)
            except QuarryError as e:  # unreadable (a folder where the HEAD log should be)
                bad[name] = f"{e.detail} (damaged; run quarry fsck)"
                continue
            if head is None:
                bad[name] = (f"its HEAD ({self.refs.head_path(name)}) names no version "
                             "(damaged; run quarry fsck)")
                continue
            try:
                ok[name] = self.snapshot(head)
            except QuarryError as e:
                bad[name] = f"{e.detail} (run quarry fsck)"
        return ok, bad

    def head(self, dataset: str) -> str | None:
        return self.refs.get(dataset)

    def require_head(self, dataset: str) -> str:
        head = self.refs.get(dataset)
        if head is None:
            raise NotFound(f"no dataset named {dataset!r}")
        return head

    def commit(self, snap: Snapshot, *, expected_parent: object = _UNSET,
               wait: bool = True) -> CommitResult:
        """Make ``snap`` the new HEAD of its dataset.

        With ``expected_parent`` (a version id, or None for a new dataset) the commit fails with
        412 if HEAD moved meanwhile (optimistic concurrency); without it, concurrent commits are
        serialised and each is recorded on top of whatever HEAD is when it gets the lock.

        ``wait=False`` returns once the commit is visible and its event journaled, before it
        is durable: the caller prepares its answer while the log's syncer thread syncs, and
        calls the result's ``wait_durable`` before giving the answer.
        """
        check_dataset_name(snap.dataset)
        with self.gc_lock(), self.refs.lock(snap.dataset):
            for part in snap.parts:
                if not self.blobs.exists(part.blob):
                    raise Conflict(f"blob {part.blob[:12]} of the new {snap.dataset} version "
                                   "vanished before the commit (a concurrent gc?); retry")
            head = self.refs.get(snap.dataset)
            if expected_parent is not _UNSET and expected_parent != head:
                raise PreconditionFailed(
                    f"{snap.dataset} is at version {(head or 'nothing')[:12]}, not "
                    f"{str(expected_parent or 'nothing')[:12]}",
                    current=head,
                )
            if head is not None:
                current = self.snapshot(head)
                if _same_version(current, snap):
                    # HEAD may be a commit of another thread still on its way to disk.
                    if self.log is not None:
                        self.log.wait_all()
                    return CommitResult(head, current, created=False)
            snap = dataclasses.replace(snap, parent=head)
            raw = snap.encode()
            version = Snapshot.id_of(raw)
            # The log record first: the disk writes it while the files are made.
            pending = None if self.log is None else self._log_commit(snap, version, raw)
            self._write_manifest(version, raw)
            # Decoded, not ``snap`` itself: readers get the same types as from the file.
            self._fresh = (version, Snapshot.decode(raw))
            self.refs.set_locked(snap.dataset, None, version, sync=self.log is None)
            if pending is not None and wait:
                pending.finish()
            # Journaled under the dataset lock, so a dataset's events are in commit order.
            event = Event(snap.dataset, COMMIT, version, head, snap.size, snap.created,
                          {"kind": snap.kind, "message": snap.message})
            span = self.journal.append(event)
        self._notify(event, span)
        if pending is not None and not wait:
            return CommitResult(version, snap, created=True, wait_durable=pending.finish)
        return CommitResult(version, snap, created=True)

    def history(self, dataset: str, limit: int | None = None) -> list[tuple[str, Snapshot]]:
        out: list[tuple[str, Snapshot]] = []
        version = self.refs.get(dataset)
        while version is not None and (limit is None or len(out) < limit):
            try:
                snap = self.snapshot(version)
            except NotFound:
                if not out:
                    raise
                break  # older versions were removed by gc: history ends here
            out.append((version, snap))
            version = snap.parent
        return out

    def _history_ids(self, dataset: str, head: str) -> tuple[str, ...]:
        # A history below a given HEAD never changes (versions are immutable), so prefix
        # lookups reuse it until HEAD moves; gc clears it.
        hit = self._ids.get(dataset)
        if hit is not None and hit[0] == head:
            return hit[1]
        hist = self.history(dataset)
        ids = tuple(sorted(vid for vid, _ in hist))  # sorted: prefixes are found by bisection
        if hist and hist[0][0] == head:
            self._ids[dataset] = (head, ids)
        return ids

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
        if len(v) == 64:
            try:
                if self.snapshot(v).dataset == dataset:
                    return v
            except NotFound:
                pass
        ids = self._history_ids(dataset, head)
        i = bisect.bisect_left(ids, v)
        candidates: set[str] = set()
        while i < len(ids) and ids[i].startswith(v) and len(candidates) < 11:
            candidates.add(ids[i])
            i += 1
        candidates |= {a for a in aliases.values() if a.startswith(v)}
        if not candidates:
            # A version gc cut off from HEAD's history (no longer aliased, not yet collected)
            # still exists: look for it among the manifests before saying it does not.
            for path in self.manifests.glob(f"{v}*.json"):
                with contextlib.suppress(QuarryError):
                    if self.snapshot(path.stem).dataset == dataset:
                        candidates.add(path.stem)
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
        self.ensure_space(1 << 16)
        with self.refs.lock(dataset):
            previous = self.refs.get(dataset, alias)
            self.refs.set_locked(dataset, alias, target)
            event = Event(dataset, ALIAS, target, previous, self.snapshot(target).size,
                          extra={"alias": alias})
            span = self.journal.append(event)
        self._notify(event, span)
        return target

    def delete_alias(self, dataset: str, alias: str) -> str:
        check_alias_name(alias)
        with self.refs.lock(dataset):
            previous = self.refs.get(dataset, alias)
            if previous is None:
                raise NotFound(f"{dataset} has no alias {alias!r}")
            self.refs.set_locked(dataset, alias, None)
            event = Event(dataset, ALIAS, None, previous, None, extra={"alias": alias})
            span = self.journal.append(event)
        self._notify(event, span)
        return previous

    def delete_dataset(self, dataset: str) -> Event:
        """Remove a dataset: its HEAD and aliases, at once (refs.remove_locked). Its versions
        and blobs stay until ``gc`` finds nothing else keeps them. Returns the ``deleted``
        event it journaled (``version``: the HEAD it had; ``aliases``: those it had)."""
        check_dataset_name(dataset)
        with self.refs.lock(dataset):
            head = self.refs.get(dataset)
            if head is None:
                raise NotFound(f"no dataset named {dataset!r}")
            aliases = self.refs.aliases(dataset)
            self.refs.remove_locked(dataset)
            self._ids.pop(dataset, None)
            if self._fresh is not None and self._fresh[1].dataset == dataset:
                self._fresh = None
            event = Event(dataset, DELETED, None, head, None, extra={"aliases": aliases})
            span = self.journal.append(event)
        self._notify(event, span)
        return event


def _same_version(current: Snapshot, new: Snapshot) -> bool:
    """Whether committing ``new`` over ``current`` would change nothing a reader sees: same
    bytes, kind and link (a re-linked file that was touched gets its new size and mtime
    recorded), the same kinds of parts, and the same line-index mode (sparse over dense is a
    new version; offsets only stored wider, as a streamed put does, are not)."""
    if current.sha256 != new.sha256 or current.kind != new.kind or current.link != new.link:
        return False
    roles = {p.role for p in current.parts}
    if any(p.role not in roles for p in new.parts):
        return False
    return _index_mode(current) == _index_mode(new)


def _index_mode(snap: Snapshot) -> tuple[object, object]:
    info = snap.meta.get("line_index")
    return (info.get("mode"), info.get("every")) if isinstance(info, dict) else (None, None)
