from __future__ import annotations

import os

from quarry.datasets.kinds import put_bytes
from quarry.store import Store
from quarry.store.fsck import check
from quarry.store.gc import collect


def fill(store: Store) -> list[str]:
    return [put_bytes(store, "d", b"version %d" % i).version for i in range(5)]


def test_gc_dry_run_then_apply(store: Store) -> None:
    versions = fill(store)
    store.set_alias("d", "prod", versions[0])
    dry = collect(store, keep=2, grace=0)
    assert not dry.applied
    assert set(dry.dropped_versions) == set(versions[1:3])
    assert len(dry.dropped_blobs) == 2 and dry.freed_bytes == 18
    assert all(store.snapshot(v) for v in versions)  # nothing deleted yet
    done = collect(store, keep=2, apply=True, grace=0)
    assert done.dropped_versions == dry.dropped_versions
    assert [v for v, _ in store.history("d")] == [versions[4], versions[3]]
    assert store.resolve("d", "prod") == versions[0]
    assert check(store).ok
    assert collect(store, keep=2, apply=True, grace=0).dropped_versions == ()


def test_gc_grace_protects_young_files(store: Store) -> None:
    fill(store)
    orphan = store.blobs.put_bytes(b"a writer's blob, not committed yet")
    report = collect(store, keep=1, apply=True)  # default grace: an hour
    assert report.dropped_versions == () and store.blobs.exists(orphan)


def test_fsck_reports_damage_without_crashing(store: Store) -> None:
    versions = fill(store)
    assert check(store).ok
    snap = store.snapshot(versions[2])
    blob = store.blobs.path(snap.part("data").blob)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"flipped")
    (store.manifests / f"{versions[0]}.json").unlink()
    (store.manifests / f"{versions[1]}.json").write_bytes(b"{not json")
    (store.manifests / ("0" * 64 + ".json")).write_bytes(
        (store.manifests / f"{versions[3]}.json").read_bytes())
    report = check(store)
    assert not report.ok
    found = {(p.what, p.name[:12]) for p in report.problems}
    assert ("blob", snap.part("data").blob[:12]) in found
    assert ("manifest", versions[1][:12]) in found  # unreadable
    assert ("manifest", "0" * 12) in found  # does not hash to its name
    assert ("manifest", versions[2][:12]) in found  # its parent is unreadable
    assert report.to_json()["ok"] is False


def test_fsck_dangling_ref(store: Store) -> None:
    versions = fill(store)
    (store.manifests / f"{versions[-1]}.json").unlink()
    store._load.cache_clear()
    report = check(store)
    assert any(p.what == "ref" and "HEAD" in p.name for p in report.problems)
