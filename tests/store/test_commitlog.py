"""The commit log: records survive, torn ones end the log, replay restores a power loss."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quarry.datasets.kinds import put_bytes, read_data
from quarry.store import Store
from quarry.store.commitlog import HEADER, REC, CommitLog, Record, decode_payload, encode_record
from quarry.store.fsck import check


def rec(i: int, blob: bytes = b"") -> Record:
    data = blob or b"blob %d " % i * 20
    return Record(f"ds{i % 3}", f"{i:064x}", b'{"manifest": %d}' % i,
                  ((hashlib.sha256(data).hexdigest(), data),))


def replayed(path: Path, boot: str = "later-boot") -> list[Record]:
    log = CommitLog(path, boot=boot)
    assert log.needs_replay()
    with log.replaying() as records:
        assert records is not None
        out = list(records)
    assert not log.needs_replay()
    log.close()
    return out


def set_boot(path: Path, boot: str) -> None:
    """Make the log look as if it was written in another boot (the machine went down)."""
    log = CommitLog(path, boot=boot)
    fd = os.open(path, os.O_RDWR)
    try:
        _, gen = log._read_header(fd)
        os.pwrite(fd, log._header(gen), 0)
    finally:
        os.close(fd)


@given(st.text(min_size=1, max_size=40), st.binary(max_size=300),
       st.lists(st.binary(max_size=200), max_size=4), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_records_round_trip(dataset: str, manifest: bytes, blobs: list[bytes], gen: int) -> None:
    r = Record(dataset, "ab" * 32, manifest,
               tuple((hashlib.sha256(b).hexdigest(), b) for b in blobs))
    raw = encode_record(gen, r)
    magic, rgen, length, _ = REC.unpack_from(raw)
    assert (magic, rgen, length) == (b"QREC", gen, len(raw) - REC.size)
    assert decode_payload(raw[REC.size:]) == r


def test_appends_are_replayed_in_order_after_a_reboot(tmp_path: Path) -> None:
    path = tmp_path / "commits.log"
    log = CommitLog(path, size=1 << 20, boot="boot-1")
    written = [rec(i) for i in range(20)]
    for r in written:
        assert log.append(r)
    log.close()
    assert not CommitLog(path, boot="boot-1").needs_replay()  # same boot: nothing to do
    assert replayed(path) == written
    # The replay started a new generation: the old records are not replayed twice.
    set_boot(path, "boot-3")
    assert replayed(path, "boot-4") == []


def test_a_full_log_checkpoints_and_keeps_only_the_new_generation(tmp_path: Path) -> None:
    path = tmp_path / "commits.log"
    log = CommitLog(path, size=HEADER + 4000, boot="boot-1")
    written = [rec(i, bytes([i]) * 700) for i in range(30)]
    for r in written:
        assert log.append(r)
    log.close()
    got = replayed(path)
    # Only the records since the last checkpoint remain, and older generations' records
    # further on in the file are not taken for live ones.
    assert 0 < len(got) < len(written)
    assert got == written[-len(got):]


def test_a_torn_record_ends_the_log(tmp_path: Path) -> None:
    path = tmp_path / "commits.log"
    log = CommitLog(path, size=1 << 20, boot="boot-1")
    for i in range(3):
        log.append(rec(i))
    log.close()
    raw = path.read_bytes()
    third = HEADER + 2 * len(encode_record(1, rec(0)))
    with open(path, "r+b") as f:
        f.seek(third + REC.size + 10)
        f.write(b"\xff")  # a sector of the last record never reached the disk
    assert raw[third:third + 4] == b"QREC"
    assert replayed(path) == [rec(0), rec(1)]


def test_a_record_that_cannot_fit_is_refused(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "commits.log", size=HEADER + 1024, boot="boot-1")
    assert not log.append(rec(1, b"x" * 2000))
    assert log.append(rec(2))
    log.close()


WRITER = textwrap.dedent("""
    import hashlib, sys
    from quarry.store.commitlog import CommitLog, Record
    log = CommitLog(__import__("pathlib").Path(sys.argv[1]), size=1 << 20, boot="boot-1")
    k = sys.argv[2]
    for i in range(60):
        data = f"{k}-{i}".encode() * 10
        log.append(Record(k, f"{i:064x}", b"m", ((hashlib.sha256(data).hexdigest(), data),)))
""")


def test_processes_appending_at_once_lose_no_record(tmp_path: Path) -> None:
    path = tmp_path / "commits.log"
    CommitLog(path, size=1 << 20, boot="boot-1").append(rec(0))  # create it first
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{k}"])
             for k in range(3)]
    for p in procs:
        assert p.wait(120) == 0
    got = replayed(path)
    for k in range(3):
        mine = [r for r in got if r.dataset == f"w{k}"]
        assert [r.version for r in mine] == [f"{i:064x}" for i in range(60)]
        assert all(r.blobs[0][1] == f"w{k}-{i}".encode() * 10 for i, r in enumerate(mine))


def test_a_power_loss_is_repaired_from_the_log(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = Store(root, durable=True)
    if store.log is None:
        pytest.skip("this system does not name its boots")
    put_bytes(store, "a", b"first\n")
    put_bytes(store, "a", b"second\n")
    last_a = put_bytes(store, "a", b"third\n")
    lines = put_bytes(store, "b", b"one\ntwo\nthree\n", kind="lines")
    c1 = put_bytes(store, "c", b"c one\n")
    loose = Store(root, durable=False)  # a commit that never reached the log
    c2 = put_bytes(loose, "c", b"c two, never acknowledged durable\n")
    d1 = put_bytes(loose, "d", b"d one\n")
    d2 = put_bytes(loose, "d", b"d two\n")
    store.log.close()

    # The power loss: the page cache's last writes never reached the disk.
    for r in (last_a, lines, c2, d2):
        (root / "manifests" / f"{r.version}.json").unlink()
        for part in r.snapshot.parts:
            store.blobs.path(part.blob).unlink(missing_ok=True)
    head_a = store.refs.head_path("a")
    head_a.write_bytes(head_a.read_bytes()[:65])  # only the first HEAD record survived
    store.refs.head_path("b").unlink()
    set_boot(root / "wal" / "commits.log", "the-boot-before")

    after = Store(root, durable=True)
    assert after.require_head("a") == last_a.version
    assert read_data(after, after.snapshot(last_a.version)).read_all() == b"third\n"
    assert len(after.history("a")) == 3
    assert after.require_head("b") == lines.version
    assert read_data(after, after.snapshot(lines.version)).read_all() == b"one\ntwo\nthree\n"
    assert after.require_head("c") == c1.version  # back to its last logged commit
    assert after.require_head("d") == d1.version  # its last whole version
    report = check(after)
    assert report.ok, report.problems
    assert after.log is not None and not after.log.needs_replay()


def test_the_store_reports_what_a_commit_waits_for_the_disk(tmp_path: Path) -> None:
    assert Store(tmp_path / "fast", durable=False).commit_seconds() == 0.0
    store = Store(tmp_path / "safe", durable=True)
    if store.log is None:
        pytest.skip("no boot id here: every file is fsynced, no commit log")
    assert store.commit_seconds() == float("inf")  # nothing measured yet
    put_bytes(store, "d", b"one")
    first = store.commit_seconds()
    assert 0.0 < first < 10.0
    put_bytes(store, "d", b"two")
    assert 0.0 < store.commit_seconds() < 10.0


def test_write_is_made_durable_by_the_syncer_then_it_ends(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from quarry.store import commitlog

    monkeypatch.setattr(commitlog, "SYNCER_IDLE", 0.05)
    log = CommitLog(tmp_path / "c.log", size=1 << 20, boot="boot-1")
    ticket = log.write(rec(1))
    assert ticket is not None
    deadline = time.monotonic() + 10
    while log._synced < ticket and time.monotonic() < deadline:  # no wait() of ours
        time.sleep(0.005)
    assert log._synced >= ticket and log.sync_seconds < float("inf")
    while log._syncer is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log._syncer is None  # idle: the thread ended
    log.wait(log.write(rec(2)) or (0, 0))  # a new one starts for the next write
    assert log._synced >= (log._gen, log._pos)
    log.close()
    assert log._syncer is None
    assert [r.version for r in replayed(tmp_path / "c.log")] == [rec(1).version, rec(2).version]


def test_a_commit_that_does_not_wait_is_visible_then_durable(store: Store) -> None:
    from quarry.datasets.document import DocumentWriter

    w = DocumentWriter(store, "d/x")
    w.write(b"payload")
    res = w.commit(wait=False)
    assert store.require_head("d/x") == res.version  # visible before it is durable
    res.wait_durable()
    assert store.log is not None
    with store.log._mutex:
        end = (store.log._gen, store.log._pos)
    assert store.log._synced >= end


def test_logged_blob_bytes_match_the_blob_whichever_way_it_was_written(tmp_path: Path) -> None:
    """A small blob's bytes go into the log record from memory: they must be the blob's
    bytes, whether it was written (an HTTP body) or copied from a file (``quarry put``)."""
    from quarry.datasets.lines import put_lines

    store = Store(tmp_path / "data")
    assert store.log is not None
    src = tmp_path / "small.txt"
    src.write_bytes(b"one\ntwo\nthree\n")
    copied = put_lines(store, "t/copied", src)  # copy_file_range from the file
    written = put_bytes(store, "t/written", b"a body\n", default_kind="document")
    store.log.close()
    records = {r.dataset: r for r in replayed(store.log.path)}
    for name, res in (("t/copied", copied), ("t/written", written)):
        for blob_id, data in records[name].blobs:
            assert hashlib.sha256(data).hexdigest() == blob_id
            assert data == store.blobs.read_bytes(blob_id)
        assert res.version == records[name].version
