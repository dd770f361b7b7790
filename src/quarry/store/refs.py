"""Movable names (HEAD, aliases) for snapshots, moved by compare-and-swap under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quarry.errors import BadRequest, Corrupt, PreconditionFailed
from quarry.store.atomic import atomic_write_bytes, fsync_dir
from quarry.store.tempfiles import temp_path

# Dataset names are paths of simple segments (``weblogs``, ``qplan/raw``); ``@`` is reserved
# for the ref files inside a dataset's folder, so names and refs can never collide.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
DATASET_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}")
ALIAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
HEAD = "@HEAD"
# Segments that name routes below a dataset (/datasets/<name>/lines/...), so no dataset
# name may contain them as a segment.
RESERVED_SEGMENTS = frozenset({
    "lines", "versions", "aliases", "data", "query", "join", "stats", "keys", "records",
    "find", "events", "shards", "explain",
})
ALIASES = "@aliases"
RECORD = 65  # one HEAD record: a version id and a newline
_VERSION = re.compile(rb"[0-9a-f]{64}")
MAX_HEAD_LOG = RECORD * 1024


def check_dataset_name(name: str) -> str:
    if any(seg in RESERVED_SEGMENTS for seg in name.split("/")):
        raise BadRequest(
            f"invalid dataset name {name[:80]!r}: segments may not be one of "
            f"{', '.join(sorted(RESERVED_SEGMENTS))}"
        )
    if not DATASET_NAME.fullmatch(name) or ".." in name:
        raise BadRequest(
            f"invalid dataset name {name[:80]!r}: use letters, digits, '.', '_', '-' "
            "in up to 8 segments separated by '/', each starting with a letter or digit"
        )
    return name


def check_alias_name(alias: str) -> str:
    if not ALIAS_NAME.fullmatch(alias) or alias.upper() == "HEAD":
        raise BadRequest(
            f"invalid alias {alias[:80]!r}: start with a letter, then letters, digits, "
            "'.', '_' or '-' (and not HEAD)"
        )
    return alias


class RefStore:
    def __init__(self, root: Path, locks: Path, tmp_dir: Path, *, durable: bool = True) -> None:
        self.durable = durable
        self.root = root
        self.locks = locks
        self.tmp_dir = tmp_dir
        root.mkdir(parents=True, exist_ok=True)
        locks.mkdir(parents=True, exist_ok=True)
        # Checked names and their folders: HEAD reads are frequent (every version lookup) and
        # validating and joining paths cost more than the read itself.
        self._dirs: dict[str, str] = {}

    def _dir_str(self, dataset: str) -> str:
        d = self._dirs.get(dataset)
        if d is None:
            d = os.path.join(self.root, check_dataset_name(dataset))
            if len(self._dirs) < 4096:
                self._dirs[dataset] = d
        return d

    def _dir(self, dataset: str) -> Path:
        return Path(self._dir_str(dataset))

    def _file(self, dataset: str, alias: str | None) -> Path:
        d = self._dir(dataset)
        return d / HEAD if alias is None else d / ALIASES / check_alias_name(alias)

    @contextmanager
    def lock(self, dataset: str) -> Iterator[None]:
        """An exclusive lock per dataset, held across processes (flock) and threads."""
        name = hashlib.sha256(dataset.encode()).hexdigest()[:32]
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def get(self, dataset: str, alias: str | None = None) -> str | None:
        if alias is not None:
            try:
                return self._file(dataset, alias).read_text().strip() or None
            except FileNotFoundError:
                return None
        path = os.path.join(self._dir_str(dataset), HEAD)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as e:  # unreadable: damage that fsck reports, never a bare OSError
            raise Corrupt(f"{path}: {e.strerror or e}") from None
        try:
            size = os.fstat(fd).st_size
            whole = size - size % RECORD  # a torn last record (a killed writer) is ignored
            n = min(whole, 2 * RECORD)
            tail = os.pread(fd, n, whole - n) if n else b""
        except OSError as e:  # a folder where the HEAD log should be: EISDIR
            raise Corrupt(f"{path}: {e.strerror or e}") from None
        finally:
            os.close(fd)
        # The last well-formed record; one garbled by a power loss falls back to the one
        # before it.
        for end in (len(tail), len(tail) - RECORD):
            rec = tail[end - RECORD : end] if end >= RECORD else b""
            if len(rec) == RECORD and rec[-1:] == b"\n" and _VERSION.fullmatch(rec[:-1]):
                return rec[:-1].decode("ascii")
        return None

    def head_path(self, dataset: str) -> Path:
        return self._file(dataset, None)

    def head_records(self, dataset: str) -> list[str]:
        """Every well-formed record of the HEAD log, oldest first (HEAD is the last)."""
        try:
            raw = self._file(dataset, None).read_bytes()
        except FileNotFoundError:
            return []
        recs = (raw[i:i + RECORD] for i in range(0, len(raw) - RECORD + 1, RECORD))
        return [r[:-1].decode("ascii") for r in recs
                if r[-1:] == b"\n" and _VERSION.fullmatch(r[:-1])]

    def set_locked(self, dataset: str, alias: str | None, new: str | None, *,
                   sync: bool = True) -> None:
        """Move a ref; the caller holds ``lock(dataset)``. ``None`` deletes it.

        ``sync=False`` leaves HEAD in the page cache, for a caller whose commit log makes the
        move durable.

        HEAD is a log of fixed-size records (``<64 hex>\n``), appended to: one small write
        instead of creating and renaming a file, which costs a millisecond or more on busy
        disks. The last complete record is HEAD; a record torn by a crash is cut off by the
        next append. The log is first written, and rewritten when it grows past
        ``MAX_HEAD_LOG``, atomically (temp file, fsync, rename).
        """
        path = self._file(dataset, alias)
        if new is None:
            path.unlink(missing_ok=True)
            return
        record = new.encode() + b"\n"
        if alias is not None or len(record) != RECORD:
            atomic_write_bytes(path, record, self.tmp_dir, durable=self.durable)
            return
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            fd = -1
        try:
            size = os.fstat(fd).st_size if fd >= 0 else 0
            # A new log (or one without a single whole record, left by an older Quarry that
            # created the file before writing it) is made whole elsewhere and renamed into
            # place: a write that fails (a full disk) must leave no HEAD at all, never an
            # empty one that names no version.
            if size < RECORD or size + RECORD > MAX_HEAD_LOG:
                if fd >= 0:
                    os.close(fd)
                fd = -1
                atomic_write_bytes(path, record, self.tmp_dir, durable=self.durable and sync)
                return
            whole = size - size % RECORD
            os.pwrite(fd, record, whole)
            if whole != size:
                os.ftruncate(fd, whole + RECORD)
            if self.durable and sync:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)

    def compare_and_set(
        self, dataset: str, alias: str | None, expected: str | None, new: str | None
    ) -> None:
        with self.lock(dataset):
            current = self.get(dataset, alias)
            if current != expected:
                raise PreconditionFailed(
                    f"{dataset} {alias or 'HEAD'} is at {(current or 'nothing')[:12]}, "
                    f"not at {(expected or 'nothing')[:12]} as expected",
                    current=current,
                )
            self.set_locked(dataset, alias, new)

    def aliases(self, dataset: str) -> dict[str, str]:
        d = os.path.join(self._dir_str(dataset), ALIASES)
        try:
            names = sorted(os.listdir(d))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out = {}
        for name in names:
            if not name.endswith(".tmp"):
                try:
                    with open(os.path.join(d, name)) as f:
                        out[name] = f.read().strip()
                except FileNotFoundError:
                    continue  # deleted meanwhile
        return out

    def remove_locked(self, dataset: str) -> None:
        """Remove a dataset's refs (HEAD and aliases); the caller holds ``lock(dataset)``.

        Its folder is renamed into the temp folder and removed there, so no reader ever sees
        half the refs: the rename is the delete. A dataset with datasets below it
        (``a`` of ``a/b``) keeps its folder: its aliases go first, then HEAD, each with one
        rename, so every state in between is a dataset with fewer aliases (and a crash
        leaves one whose delete can be run again)."""
        folder = self._dir(dataset)
        # A temp name: if this process dies before removing it, cleaning temp files does.
        trash = temp_path(self.tmp_dir, "-deleted-refs")
        trash.mkdir()
        own = {HEAD, ALIASES}
        try:
            if all(entry in own for entry in os.listdir(folder)):
                os.rename(folder, trash / "refs")
            else:
                for entry in (ALIASES, HEAD):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(folder / entry, trash / entry)
            if self.durable:
                fsync_dir(folder.parent)
                fsync_dir(folder)  # (gone when renamed whole: then nothing to sync there)
        except FileNotFoundError:
            pass
        finally:
            shutil.rmtree(trash, ignore_errors=True)
        # Folders of names that held only this dataset (qplan of qplan/raw) go too.
        parent = folder.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def datasets(self) -> list[str]:
        names = []
        for head in self.root.rglob(HEAD):
            names.append(head.parent.relative_to(self.root).as_posix())
        return sorted(names)
