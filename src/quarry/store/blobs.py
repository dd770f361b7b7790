"""Content-addressed blobs: the file name is the SHA-256 of the content."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from quarry.errors import Corrupt, NotFound
from quarry.store.atomic import fsync_dir, replace_into
from quarry.store.tempfiles import temp_path

READ_BLOCK = 8 << 20
# A durable writer starts the disk writing every this many bytes, so the fsync at the end
# waits for the last stretch only instead of the whole blob.
WRITEBACK_EVERY = 32 << 20
RECENT_MAX = 64


class BlobWriter:
    """Streams bytes into a temp file while hashing them; ``commit`` names it by its hash.

    Nothing is visible in the blob folder until ``commit``: a crash leaves only a temp file,
    which ``Store.clean_tmp`` removes once this process is gone.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._tmp = temp_path(store.tmp_dir, ".blob")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        self._hash = hashlib.sha256()
        self.size = 0
        self.blob_id: str | None = None
        self._written_back = 0
        # A small blob's bytes, kept for the commit log record (instead of reading it back).
        self._copy: list[bytes] | None = [] if store.defer_upto > 0 else None

    def write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += memoryview(data).nbytes
        self._keep(data)
        self._writeback()

    def _keep(self, data: bytes | memoryview) -> None:
        """Every appended block goes through here, so the copy is the whole blob or none."""
        if self._copy is not None:
            if self.size <= self._store.defer_upto:
                self._copy.append(bytes(data))
            else:
                self._copy = None

    def _writeback(self) -> None:
        if self._store.durable and self.size - self._written_back >= WRITEBACK_EVERY:
            self._file.flush()
            # On Linux, DONTNEED starts writeback of the dirty pages in the range (and drops
            # the clean ones): disk writing overlaps receiving and hashing the rest.
            os.posix_fadvise(self._file.fileno(), 0, self.size, os.POSIX_FADV_DONTNEED)
            self._written_back = self.size

    def copy_block(self, src_fd: int, block: bytes | memoryview) -> None:
        """Append ``block``, which was just read from ``src_fd`` at offset ``self.size``.

        The block is hashed from memory but copied in the kernel (copy_file_range), which
        saves a user-space write of every byte; falls back to a plain write where the file
        systems cannot do that.
        """
        self._hash.update(block)
        n = memoryview(block).nbytes
        self._file.flush()
        out = self._file.fileno()
        done = 0
        try:
            while done < n:
                step = os.copy_file_range(src_fd, out, n - done, self.size + done,
                                          self.size + done)
                if step == 0:
                    break
                done += step
        except OSError:
            pass
        if done < n:
            os.pwrite(out, memoryview(block)[done:], self.size + done)
        self.size += n
        self._file.seek(self.size)
        self._keep(block)
        self._writeback()

    def commit(self) -> str:
        self._file.flush()
        # A small blob is made durable by the commit that references it (its bytes go into
        # the store's commit log); fsyncing it here too would double the disk round trips.
        sync = self._store.durable and self.size > self._store.defer_upto
        if sync:
            os.fsync(self._file.fileno())
        self._file.close()
        blob_id = self._hash.hexdigest()
        dest = self._store.path(blob_id)
        if dest.exists():
            # Same content already stored: keep the existing file, drop ours. Touch it so gc's
            # grace period protects it until the commit that is about to reference it.
            self._tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                os.utime(dest)
        else:
            os.chmod(self._tmp, 0o444)
            replace_into(self._tmp, dest)
            if sync:
                fsync_dir(dest.parent)
        if self._copy is not None:
            self._store.remember(blob_id, b"".join(self._copy))
        self.blob_id = blob_id
        return blob_id

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or self.blob_id is None:
            self.abort()


class BlobStore:
    def __init__(self, root: Path, tmp_dir: Path, *, durable: bool = True) -> None:
        self.root = root
        self._root_str = str(root)
        self.tmp_dir = tmp_dir
        self.durable = durable
        # Blobs up to this size are not fsync'ed by their writer (see BlobWriter.commit).
        self.defer_upto = -1
        # Bytes of small blobs just written, until the commit that logs them takes them.
        self._recent: dict[str, bytes] = {}
        self._recent_lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)

    def remember(self, blob_id: str, data: bytes) -> None:
        with self._recent_lock:
            if len(self._recent) >= RECENT_MAX:  # writers that never committed
                self._recent.pop(next(iter(self._recent)))
            self._recent[blob_id] = data

    def recent_bytes(self, blob_id: str) -> bytes:
        """A small blob's bytes: from memory if it was just written here, else read."""
        with self._recent_lock:
            data = self._recent.pop(blob_id, None)
        return self.read_bytes(blob_id) if data is None else data

    def path(self, blob_id: str) -> Path:
        # One string, parsed once: this is on every GET's path (``root / a / b`` costs 3x).
        return Path(f"{self._root_str}/{blob_id[:2]}/{blob_id}")

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).exists()

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> str:
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def restore(self, blob_id: str, data: bytes) -> bool:
        """Rewrite a blob from a copy of its bytes unless it is already whole; True if it
        was rewritten. Not fsync'ed: the caller syncs the file system after a batch."""
        if hashlib.sha256(data).hexdigest() != blob_id:
            raise Corrupt(f"the copy of blob {blob_id[:12]} to restore is damaged")
        dest = self.path(blob_id)
        with contextlib.suppress(OSError):
            if dest.stat().st_size == len(data) and dest.read_bytes() == data:
                return False
        tmp = temp_path(self.tmp_dir, ".blob")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o444)
        replace_into(tmp, dest)
        return True

    def read_bytes(self, blob_id: str) -> bytes:
        try:
            return self.path(blob_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {blob_id[:12]} is missing from the store") from None

    def size(self, blob_id: str) -> int:
        return self.path(blob_id).stat().st_size

    def ids(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    yield f.name

    def verify(self, blob_id: str) -> None:
        """Re-hash a blob; raise ``Corrupt`` if its content no longer matches its name."""
        h = hashlib.sha256()
        try:
            with open(self.path(blob_id), "rb") as f:
                while block := f.read(READ_BLOCK):
                    h.update(block)
        except FileNotFoundError:
            raise Corrupt(f"blob {blob_id} is missing") from None
        if h.hexdigest() != blob_id:
            raise Corrupt(f"blob {blob_id} is damaged: its content hashes to {h.hexdigest()}")
