"""Crash-safe file writes: temp file in the same folder tree, fsync, rename, fsync dir."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from quarry.errors import InsufficientStorage
from quarry.store.tempfiles import temp_path


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path


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
