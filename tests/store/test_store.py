from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from quarry.errors import BadRequest, InsufficientStorage, NotFound, PreconditionFailed
from quarry.store import Part, Snapshot, Store
from quarry.store.refs import check_alias_name, check_dataset_name


def snap(store: Store, name: str, content: bytes, message: str = "") -> Snapshot:
    blob = store.blobs.put_bytes(content)
    return Snapshot(dataset=name, kind="document", parent=None, created=time.time(),
                    size=len(content), sha256=blob, parts=(Part("data", blob, len(content)),),
                    message=message)


def test_commit_history_and_unchanged(store: Store) -> None:
    r1 = store.commit(snap(store, "docs/a", b"one"))
    r2 = store.commit(snap(store, "docs/a", b"two"))
    r3 = store.commit(snap(store, "docs/a", b"two"))
    assert r1.created and r2.created and not r3.created
    assert r3.version == r2.version
    hist = store.history("docs/a")
    assert [v for v, _ in hist] == [r2.version, r1.version]
    assert hist[0][1].parent == r1.version
    assert store.datasets() == ["docs/a"]


def test_manifests_are_content_addressed_and_immutable(store: Store) -> None:
    r = store.commit(snap(store, "a", b"x"))
    raw = (store.manifests / f"{r.version}.json").read_bytes()
    assert Snapshot.decode(raw).id == r.version
    blob = store.blobs.path(r.snapshot.part("data").blob)
    assert blob.stat().st_mode & 0o222 == 0  # blobs are read-only


def test_expected_parent(store: Store) -> None:
    r1 = store.commit(snap(store, "a", b"1"), expected_parent=None)
    with pytest.raises(PreconditionFailed):
        store.commit(snap(store, "a", b"2"), expected_parent=None)
    r2 = store.commit(snap(store, "a", b"2"), expected_parent=r1.version)
    assert store.head("a") == r2.version


def test_resolve(store: Store) -> None:
    r1 = store.commit(snap(store, "a", b"1"))
    r2 = store.commit(snap(store, "a", b"2"))
    assert store.resolve("a") == r2.version
    assert store.resolve("a", "HEAD") == r2.version
    assert store.resolve("a", r1.version[:5]) == r1.version
    assert store.resolve("a", r1.version.upper()[:8]) == r1.version
    store.set_alias("a", "prod", r1.version[:6])
    assert store.resolve("a", "prod") == r1.version
    with pytest.raises(BadRequest):
        store.resolve("a", r1.version[:4])
    with pytest.raises(NotFound):
        store.resolve("a", "0" * 64 if not r1.version.startswith("0") else "f" * 64)
    with pytest.raises(NotFound):
        store.resolve("a", "nosuchalias")
    with pytest.raises(NotFound):
        store.resolve("missing")


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "../x", "a/../b", "-a", "a b",
                                 "a/lines", "versions", "x" * 200, "a@b"])
def test_bad_dataset_names(bad: str) -> None:
    with pytest.raises(BadRequest):
        check_dataset_name(bad)


@pytest.mark.parametrize("bad", ["", "HEAD", "1abc", "a/b", "a b"])
def test_bad_alias_names(bad: str) -> None:
    with pytest.raises(BadRequest):
        check_alias_name(bad)


def test_concurrent_commits_are_all_recorded(store: Store) -> None:
    def writer(k: int) -> None:
        s = Store(store.root)  # each writer its own Store object, as separate processes would
        for i in range(10):
            s.commit(snap(s, "shared", b"%d-%d" % (k, i)))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.history("shared")) == 40


def test_free_space_check_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "d", min_free_bytes=1 << 62)
    with pytest.raises(InsufficientStorage):
        store.ensure_space(1)


def test_blob_writer_abort_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.blobs.writer() as w:
        w.write(b"partial")
        raise RuntimeError("crash")
    assert list(store.tmp_dir.iterdir()) == []
    assert list(store.blobs.ids()) == []


def test_head_log_survives_torn_and_garbled_records(tmp_path: Path) -> None:
    from quarry.store.refs import HEAD, MAX_HEAD_LOG, RECORD

    store = Store(tmp_path / "d", durable=False)  # a thousand commits: skip the fsyncs

    r1 = store.commit(snap(store, "log", b"1"))
    r2 = store.commit(snap(store, "log", b"2"))
    path = store.refs.root / "log" / HEAD
    assert path.stat().st_size == 2 * RECORD
    with open(path, "ab") as f:
        f.write(b"abc")  # a writer killed mid-record
    assert store.head("log") == r2.version
    r3 = store.commit(snap(store, "log", b"3"))
    assert path.stat().st_size == 3 * RECORD and store.head("log") == r3.version
    with open(path, "ab") as f:
        f.write(b"\0" * RECORD)  # a record lost to a power cut
    assert store.head("log") == r3.version
    assert [v for v, _ in store.history("log")] == [r3.version, r2.version, r1.version]
    for i in range(MAX_HEAD_LOG // RECORD + 2):
        store.commit(snap(store, "log", b"%d" % (i + 10)))
    assert path.stat().st_size < MAX_HEAD_LOG  # rewritten when it grew too long
    assert len(store.history("log")) == MAX_HEAD_LOG // RECORD + 5


def test_large_durable_blob_with_early_writeback(store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import quarry.store.blobs as blobs

    monkeypatch.setattr(blobs, "WRITEBACK_EVERY", 1 << 16)
    data = bytes(range(256)) * 4096  # 1 MiB, written back every 64 KiB
    with store.blobs.writer() as w:
        for i in range(0, len(data), 10_000):
            w.write(data[i : i + 10_000])
        blob = w.commit()
    assert blob == hashlib.sha256(data).hexdigest()
    assert store.blobs.read_bytes(blob) == data


def test_copy_block_equals_plain_write(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    payload = bytes(range(256)) * 5000
    src.write_bytes(payload)
    with open(src, "rb") as f, store.blobs.writer() as w:
        while block := f.read(70_000):
            # the block was read from the file, at the writer's current size
            w.copy_block(f.fileno(), block)
        blob = w.commit()
    assert blob == store.blobs.put_bytes(payload)
    assert store.blobs.read_bytes(blob) == payload
