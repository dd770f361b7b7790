"""The commit log: one ``fdatasync`` makes a small commit durable, instead of five fsyncs.

A durable commit used to fsync its blob, the blob's folder, its manifest, the manifest's
folder and HEAD: five round trips to the disk, each one a journal commit of the file
system, for a 1 KB document. Here a commit writes those files into the page cache only and
appends one record to this log — the manifest, the bytes of its small blobs and the HEAD
move — then ``fdatasync``s the log. The log is a preallocated, zero-filled file that is
overwritten in place, so that ``fdatasync`` flushes data blocks only, never file-system
metadata. Several threads committing at once share one ``fdatasync`` (group commit).

Replay is only needed after the machine itself went down: a process that dies leaves its
writes in the page cache, where every other process sees them, and the kernel writes them
out. The log's header names the boot it was written in (Linux's ``boot_id``); a store
opened in a later boot replays the log, re-creating any blob, manifest or HEAD that the
power loss took, and starts a new generation. When the log is full, a checkpoint
``syncfs``es the whole file system (everything the logged commits wrote is then on disk)
and starts a new generation from the top. Records carry their generation, so records of an
older generation that still lie further on in the file are never mistaken for live ones.

Record layout: ``QREC`` magic, generation, payload length, CRC-32 (of generation and
payload), then the payload: a JSON head (dataset, version, lengths), the manifest and the
blobs. A record torn by a crash fails its CRC and ends the log there.

The ``fdatasync`` runs on a syncer thread, started by ``write`` as soon as the record is in
the page cache; a committer calls ``wait`` once it has written the commit's files (and, on
the hot path, made its answer), so the disk's flush overlaps that work instead of following it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

HEADER = 4096
MAGIC = b"QWAL1\n"
REC = struct.Struct("<4sIII")  # magic, generation, payload length, crc32
REC_MAGIC = b"QREC"
DEFAULT_SIZE = 8 << 20
# Blobs up to this size travel inside the record; bigger ones are fsync'ed by their writer
# (their own write dwarfs an fsync). A commit inlines at most INLINE_TOTAL bytes of blobs.
INLINE_MAX = 64 << 10
INLINE_TOTAL = 1 << 20
SYNCER_IDLE = 2.0  # seconds a syncer thread waits for work before it ends
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This boot's id; None where the system does not say (then the log is not used)."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _load_syncfs() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def syncfs(fd: int) -> None:
    """Flush every dirty page of the file system holding ``fd`` (``sync`` where missing)."""
    if _SYNCFS is None or _SYNCFS(fd) != 0:
        os.sync()


@dataclass(frozen=True)
class Record:
    dataset: str
    version: str
    manifest: bytes
    blobs: tuple[tuple[str, bytes], ...]


def encode_record(gen: int, rec: Record) -> bytes:
    head = orjson.dumps({"d": rec.dataset, "v": rec.version, "m": len(rec.manifest),
                         "b": [[b, len(data)] for b, data in rec.blobs]})
    payload = b"".join([struct.pack("<I", len(head)), head, rec.manifest,
                        *(data for _, data in rec.blobs)])
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<I", gen)))
    return REC.pack(REC_MAGIC, gen, len(payload), crc) + payload


def decode_payload(payload: bytes) -> Record:
    (n,) = struct.unpack_from("<I", payload)
    head = orjson.loads(payload[4:4 + n])
    at = 4 + n
    manifest = payload[at:at + head["m"]]
    at += head["m"]
    blobs = []
    for blob_id, size in head["b"]:
        blobs.append((str(blob_id), payload[at:at + size]))
        at += size
    return Record(str(head["d"]), str(head["v"]), manifest, tuple(blobs))


class CommitLog:
    """Appends commit records durably; shared by the threads of a process and by processes.

    Appends take a thread lock and an exclusive ``flock`` (flock alone does not exclude the
    threads of one process, which share the open file).
    """

    def __init__(self, path: Path, *, size: int = DEFAULT_SIZE, boot: str | None = None):
        self.path = path
        self.size = size
        self.boot = boot if boot is not None else boot_id()
        self._fd = -1
        self._gen = 0
        self._pos = HEADER
        self._synced = (0, 0)
        self._mutex = threading.Lock()
        self._sync_mutex = threading.Lock()
        # The syncer: a thread that starts the fdatasync as soon as a record is written, so
        # the disk works while the committing thread writes the commit's files and its
        # answer (see ``write``). It ends after SYNCER_IDLE seconds without work.
        self._want = (0, 0)
        self._want_cv = threading.Condition()
        self._syncer: threading.Thread | None = None
        self._closing = False
        # Recent fdatasync time (moving average), inf until one is measured: lets a server
        # decide whether a commit may block its event loop.
        self.sync_seconds = float("inf")

    # -- file ------------------------------------------------------------------------------
    def _open(self) -> int:
        if self._fd < 0:
            if not self.path.exists():
                self._create()
            self._fd = os.open(self.path, os.O_RDWR)
        return self._fd

    def _create(self) -> None:
        """Write the zero-filled file under a temp name, then rename it in: all or nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            zeros = bytes(1 << 20)
            for at in range(0, self.size, len(zeros)):
                os.pwrite(fd, zeros[: min(len(zeros), self.size - at)], at)
            os.pwrite(fd, self._header(1), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link, not rename: a log another process created meanwhile is kept.
            os.link(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _header(self, gen: int) -> bytes:
        body = MAGIC + orjson.dumps({"boot": self.boot, "gen": gen}) + b"\n"
        return body.ljust(HEADER, b"\0")

    def _read_header(self, fd: int) -> tuple[str | None, int]:
        raw = os.pread(fd, HEADER, 0)
        if not raw.startswith(MAGIC):
            return None, 0
        try:
            d = orjson.loads(raw[len(MAGIC):].split(b"\n", 1)[0])
            return d.get("boot"), int(d["gen"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None, 0

    @contextmanager
    def _locked(self) -> Iterator[int]:
        with self._mutex:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    # -- records ---------------------------------------------------------------------------
    def _next(self, fd: int, pos: int, gen: int) -> tuple[int, bytes] | None:
        """The record at ``pos`` if it is a whole one of generation ``gen``: (end, payload)."""
        if pos + REC.size > self.size:
            return None
        magic, rgen, length, crc = REC.unpack(os.pread(fd, REC.size, pos))
        if magic != REC_MAGIC or rgen != gen or pos + REC.size + length > self.size:
            return None
        payload = os.pread(fd, length, pos + REC.size)
        if len(payload) != length or zlib.crc32(payload, zlib.crc32(
                struct.pack("<I", gen))) != crc:
            return None
        return pos + REC.size + length, payload

    def _records(self, fd: int, gen: int, start: int = HEADER) -> Iterator[tuple[int, bytes]]:
        pos = start
        while (hit := self._next(fd, pos, gen)) is not None:
            pos = hit[0]
            yield hit

    def append(self, rec: Record) -> bool:
        """Append ``rec`` and return once it is on disk; False if it can never fit the log
        (the caller then makes the commit durable by fsyncing its files)."""
        ticket = self.write(rec)
        if ticket is None:
            return False
        self.wait(ticket)
        return True

    def write(self, rec: Record) -> tuple[int, int] | None:
        """Append ``rec`` and have the syncer thread make it durable, without waiting:
        ``wait`` with the ticket returned returns once it is. None if it can never fit the
        log. A commit writes its files and its answer meanwhile, so the disk's flush (and,
        on a VM, the wake-up after it) is off its critical path."""
        with self._locked() as fd:
            _, gen = self._read_header(fd)
            if gen == 0:  # no readable header (a torn checkpoint): start a generation
                self._checkpoint(fd, 1)
                gen = 1
            if gen != self._gen:
                self._gen, self._pos = gen, HEADER
            # Skip the records other processes appended since this one last wrote.
            for end, _ in self._records(fd, gen, self._pos):
                self._pos = end
            data = encode_record(gen, rec)
            if HEADER + len(data) > self.size:
                return None
            if self._pos + len(data) > self.size:
                self._checkpoint(fd, gen + 1)
                data = encode_record(self._gen, rec)
            os.pwrite(fd, data, self._pos)
            self._pos += len(data)
            ticket = (self._gen, self._pos)
        self._kick(ticket)
        return ticket

    def _kick(self, ticket: tuple[int, int]) -> None:
        with self._want_cv:
            self._want = max(self._want, ticket)
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, name="quarry-wal-sync",
                                                daemon=True)
                self._syncer.start()
            self._want_cv.notify()

    def _sync_loop(self) -> None:
        while True:
            with self._want_cv:
                while self._want <= self._synced and not self._closing:
                    if not self._want_cv.wait(SYNCER_IDLE) and self._want <= self._synced:
                        self._syncer = None  # idle: the next write starts a new one
                        return
                if self._closing:
                    self._syncer = None
                    return
                want = self._want
            try:
                self.wait(want)
            except OSError:
                # Each waiter then runs its own fdatasync and gets the error itself.
                with self._want_cv:
                    self._want = self._synced

    def wait_all(self) -> None:
        """Return once every record this process wrote so far is on disk."""
        with self._mutex:
            if self._fd < 0:
                return  # none written here
            upto = (self._gen, self._pos)
        self.wait(upto)

    def wait(self, ticket: tuple[int, int]) -> None:
        """Return once the record ``write`` gave ``ticket`` for is on disk. Group commit:
        whoever fsyncs covers every record appended before it started, so a thread that
        finds its record covered by another's fsync returns at once."""
        with self._sync_mutex:
            if self._synced >= ticket:
                return
            with self._mutex:
                upto = (self._gen, self._pos)
            t = time.perf_counter()
            os.fdatasync(self._fd)
            took = time.perf_counter() - t
            last = self.sync_seconds
            self.sync_seconds = took if last == float("inf") else 0.8 * last + 0.2 * took
            self._synced = upto

    def _checkpoint(self, fd: int, gen: int) -> None:
        """Everything logged so far reaches the disk with the file system; start afresh."""
        syncfs(fd)
        os.pwrite(fd, self._header(gen), 0)
        os.fdatasync(fd)
        self._gen, self._pos = gen, HEADER

    # -- recovery --------------------------------------------------------------------------
    def needs_replay(self) -> bool:
        """True when the log was last written in an earlier boot and may hold commits whose
        files a power loss took."""
        if self.boot is None or not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            boot, _ = self._read_header(fd)
        finally:
            os.close(fd)
        return boot != self.boot

    @contextmanager
    def replaying(self) -> Iterator[list[Record] | None]:
        """Under the log's lock: the records to replay (None if another process already
        did), then — once the caller has restored them — a checkpoint into this boot."""
        with self._locked() as fd:
            boot, gen = self._read_header(fd)
            if boot == self.boot:
                yield None
                return
            yield [decode_payload(p) for _, p in self._records(fd, gen)] if gen else []
            self._checkpoint(fd, gen + 1)

    def close(self) -> None:
        with self._want_cv:
            self._closing = True
            syncer = self._syncer
            self._want_cv.notify()
        if syncer is not None:
            syncer.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
