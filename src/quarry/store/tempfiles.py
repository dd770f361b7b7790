"""Temp files of writers, and telling a live writer's from one a dead writer left behind.

Every process that writes temp files holds an exclusive ``flock`` on a lock file named by
its token (``locks/writers/<token>.lock`` beside the temp folder) for as long as it lives;
its temp files start with that token. The kernel drops the lock when the process dies, even
by SIGKILL, so a temp file whose token's lock can be taken belongs to a dead writer: never
to a live one, in this process or another, whatever its age (a two-hour upload keeps its
file). A pid alone would not do: pids are reused, and mean nothing to another machine or
pid namespace sharing the folder; flock works across both where the file system supports it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR = ("locks", "writers")


def lock_dir(tmp_dir: Path) -> Path:
    return tmp_dir.parent.joinpath(*LOCK_DIR)


class _TempNames:
    """Temp file names unique across processes and threads: a token drawn once per process
    (again in a forked child) and a counter, instead of a random number per file (a
    ``getrandom`` call on every small write)."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._mutex = threading.Lock()
        self.token = ""
        self._held: dict[Path, int] = {}
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        # A forked child shares its parent's lock (flock belongs to the open file): it
        # closes its copies and takes a lock of its own under its own token.
        for fd in getattr(self, "_held", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held = {}
        self._mutex = threading.Lock()
        self.token = f"{os.getpid():x}-{secrets.token_hex(6)}"

    def next(self, tmp_dir: Path, hint: str) -> str:
        if tmp_dir not in self._held:
            self._hold(tmp_dir)
        return f"{self.token}-{next(self._counter)}{hint}.tmp"

    def _hold(self, tmp_dir: Path) -> None:
        with self._mutex:
            if tmp_dir in self._held:
                return
            folder = lock_dir(tmp_dir)
            folder.mkdir(parents=True, exist_ok=True)
            # Locked before it has its name: a cleaner never sees this token's lock free
            # while this process lives, not even between creating and locking the file.
            part = folder / f"{self.token}.locking"
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.replace(part, folder / f"{self.token}.lock")
            except BaseException:
                os.close(fd)
                part.unlink(missing_ok=True)
                raise
            self._held[tmp_dir] = fd


_NAMES = _TempNames()


def temp_path(tmp_dir: Path, hint: str = "") -> Path:
    return tmp_dir / _NAMES.next(tmp_dir, hint)


def _token(name: str) -> str | None:
    pid, sep, rest = name.partition("-")
    rand = rest.partition("-")[0]
    return f"{pid}-{rand}" if sep and rand else None


def _pid_gone(token: str) -> bool:
    try:
        os.kill(int(token.partition("-")[0], 16), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OverflowError):
        return False  # not a pid: its age decides
    except OSError:
        return False  # alive, another user's
    return False


@dataclass(frozen=True)
class Stale:
    """Temp files of dead writers: how many, their bytes, and the files themselves."""

    files: tuple[Path, ...]
    bytes: int
    locks: tuple[Path, ...]

    @property
    def count(self) -> int:
        return len(self.files)


def find_stale(tmp_dir: Path, *, untracked_after: float = 3600.0) -> Stale:
    """The temp files whose writer is dead. A file with no lock file for its token (made
    by an older Quarry, or left while its lock was being removed) is stale when its pid is
    not running here or it is older than ``untracked_after`` seconds."""
    files: list[Path] = []
    size = 0
    dead: list[Path] = []
    verdict: dict[str, bool | None] = {}
    locks = lock_dir(tmp_dir)
    now = time.time()
    try:
        entries = list(os.scandir(tmp_dir))
    except FileNotFoundError:
        entries = []
    for entry in entries:
        token = _token(entry.name)
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # renamed into place or removed meanwhile
        if token is None:
            stale = now - st.st_mtime > untracked_after
        else:
            if token not in verdict:
                verdict[token] = _lock_free(locks / f"{token}.lock", dead)
            free = verdict[token]
            stale = free if free is not None else (
                _pid_gone(token) or now - st.st_mtime > untracked_after)
        if stale:
            files.append(Path(entry.path))
            size += st.st_size
    # Lock files of dead writers that left no temp file behind are stale too.
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(locks):
            name = entry.name
            token = name.rsplit(".", 1)[0]
            if token in verdict:
                continue
            if name.endswith(".lock"):
                _lock_free(Path(entry.path), dead)
            elif name.endswith(".locking") and _pid_gone(token):
                dead.append(Path(entry.path))
    return Stale(tuple(files), size, tuple(dead))


def _lock_free(lock: Path, dead: list[Path]) -> bool | None:
    """Whether nobody holds ``lock`` (its writer is dead); None when there is no such file.
    A free lock is added to ``dead``."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)
    dead.append(lock)
    return True


def remove_stale(stale: Stale) -> None:
    """Delete what ``find_stale`` found: the temp files first, then their writers' locks
    (a temp file without its lock counts as stale, so an interrupted removal is finished by
    the next)."""
    for f in stale.files:
        if f.is_dir() and not f.is_symlink():  # the refs a killed dataset delete moved here
            shutil.rmtree(f, ignore_errors=True)
        else:
            f.unlink(missing_ok=True)
    for lock in stale.locks:
        lock.unlink(missing_ok=True)
