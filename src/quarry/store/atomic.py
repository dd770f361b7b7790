"""Crash-safe file writes: temp file in the same folder tree, fsync, rename, fsync dir."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from pathlib import Path

from quarry.errors import InsufficientStorage


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path


class _TempNames:
    """Temp file names unique across processes and threads: a random token drawn once per
    process (again in a forked child) and a counter, instead of a random number per file
    (a ``getrandom`` call on every small write)."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self.token = ""
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.token = f"{os.getpid():x}-{secrets.token_hex(6)}"

    def next(self, hint: str) -> str:
        return f"{self.token}-{next(self._counter)}{hint}.tmp"


_NAMES = _TempNames()


def temp_path(tmp_dir: Path, hint: str = "") -> Path:
    return tmp_dir / _NAMES.next(hint)


def replace_into(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``, making ``dest``'s folder first if it is missing (checked
    only when the rename fails: most folders exist, and each check is a system call)."""
    try:
        os.replace(tmp, dest)
    except FileNotFoundError:
        if not tmp.exists():
            raise
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)


def atomic_write_bytes(dest: Path, data: bytes, tmp_dir: Path, *, durable: bool = True) -> None:
    """Write ``data`` to ``dest`` so that readers see the old file or the new one, never half."""
    tmp = temp_path(tmp_dir)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        replace_into(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(dest.parent)


def ensure_free_space(path: Path, needed: int, reserve: int) -> None:
    """Refuse a write that would leave less than ``reserve`` bytes free on ``path``'s disk."""
    free = shutil.disk_usage(path).free
    if free - needed < reserve:
        raise InsufficientStorage(
            f"not enough free disk space in {path.name!s}: need {needed} bytes plus a reserve "
            f"of {reserve}, but only {free} are free; nothing was written",
            free_bytes=free,
            needed_bytes=needed,
        )
