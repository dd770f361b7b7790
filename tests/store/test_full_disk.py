"""A disk that fills up in the middle of a commit: no half-written ref may be left behind.

A real full disk cannot be made portably (a tiny tmpfs needs root and a mount), so the
system calls that write a HEAD record are made to fail with ENOSPC, as the kernel would.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest

from quarry.datasets.kinds import put_bytes
from quarry.store import Store
from quarry.store.fsck import check

_RECORD = re.compile(rb"[0-9a-f]{64}\n")


def fail_head_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every write of a HEAD record (64 hex digits and a newline, whether appended to
    the log with pwrite or written into a temp file with write) fail as on a full disk."""
    failed: list[int] = []
    real_write, real_pwrite = os.write, os.pwrite

    def full(data: Any) -> bool:
        if _RECORD.fullmatch(bytes(data)):
            failed.append(1)
            return True
        return False

    def write(fd: int, data: Any) -> int:
        if full(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def pwrite(fd: int, data: Any, offset: int) -> int:
        if full(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "pwrite", pwrite)
    return failed


@pytest.mark.parametrize("durable", [True, False])
def test_enospc_in_a_first_commit_leaves_no_ref(tmp_path: Path, durable: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "data", durable=durable)
    put_bytes(store, "other", b"whole\n")
    with monkeypatch.context() as m:
        failed = fail_head_writes(m)
        with pytest.raises(OSError) as exc:
            put_bytes(store, "fresh", b"never committed\n")
    assert exc.value.errno == errno.ENOSPC and failed
    assert not store.refs.head_path("fresh").exists()
    assert store.datasets() == ["other"]
    assert check(store).ok
    assert list(store.tmp_dir.iterdir()) == []
    # Once there is room again, the same put makes the dataset.
    version = put_bytes(store, "fresh", b"committed\n").version
    assert store.head("fresh") == version


def test_enospc_appending_to_head_keeps_the_previous_version(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first = put_bytes(store, "ds", b"one\n").version
    with monkeypatch.context() as m:
        fail_head_writes(m)
        with pytest.raises(OSError):
            put_bytes(store, "ds", b"two\n")
    assert Store(store.root).head("ds") == first


def test_a_head_file_left_empty_is_written_anew_by_the_next_commit(store: Store) -> None:
    """An empty @HEAD (left by a Quarry that created the file before writing it) names no
    version; the next commit replaces it whole."""
    head = store.refs.head_path("ds")
    head.parent.mkdir(parents=True)
    head.write_bytes(b"")
    report = check(store)
    assert [(p.what, p.name) for p in report.problems] == [("ref", "ds HEAD")]
    assert "no whole version record (0 bytes" in report.problems[0].detail
    version = put_bytes(store, "ds", b"data\n").version
    assert store.head("ds") == version and head.stat().st_size == 65
    assert check(store).ok
