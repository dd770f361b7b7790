"""Deleting a dataset: refs gone at once, versions and blobs left to gc, the store consistent."""

from __future__ import annotations

import pytest

from quarry.datasets.kinds import put_bytes
from quarry.errors import NotFound
from quarry.store import Store
from quarry.store.fsck import check
from quarry.store.gc import collect


def test_delete_removes_head_and_aliases_and_leaves_blobs_to_gc(store: Store) -> None:
    v1 = put_bytes(store, "docs/a", b"one").version
    v2 = put_bytes(store, "docs/a", b"two").version
    store.set_alias("docs/a", "prod", v1)
    keep = put_bytes(store, "docs/b", b"kept").version
    end = store.journal.end()
    event = store.delete_dataset("docs/a")
    assert (event.event, event.parent, dict(event.extra["aliases"])) == (
        "deleted", v2, {"prod": v1})
    assert [e for _, e in store.journal.read(end)[0]] == [event]
    assert store.datasets() == ["docs/b"] and store.head("docs/a") is None
    with pytest.raises(NotFound):
        store.resolve("docs/a", v1)
    with pytest.raises(NotFound):
        store.delete_dataset("docs/a")
    assert list(store.tmp_dir.iterdir()) == []
    report = check(store)
    assert report.ok, report.problems
    assert store.snapshot(v1).dataset == "docs/a"  # still there until gc
    gone = collect(store, keep=1, apply=True, grace=0)
    assert set(gone.dropped_versions) == {v1, v2}
    assert check(store).ok
    assert store.resolve("docs/b") == keep


def test_a_dataset_made_again_starts_afresh(store: Store) -> None:
    put_bytes(store, "a", b"one")
    store.set_alias("a", "prod", None)
    store.delete_dataset("a")
    again = put_bytes(store, "a", b"two")
    assert again.snapshot.parent is None and store.aliases("a") == {}
    assert [v for v, _ in store.history("a")] == [again.version]


def test_names_below_and_above_are_untouched(store: Store) -> None:
    put_bytes(store, "a", b"a")
    store.set_alias("a", "prod", None)
    inner = put_bytes(store, "a/b", b"a/b").version
    store.delete_dataset("a")  # its folder holds a/b's: only its own refs go
    assert store.datasets() == ["a/b"] and store.resolve("a/b") == inner
    store.delete_dataset("a/b")
    assert store.datasets() == [] and list(store.refs.root.iterdir()) == []
    put_bytes(store, "x/y/z", b"z")
    store.delete_dataset("x/y/z")  # the folders that named only it go too
    assert list(store.refs.root.iterdir()) == []
    assert check(store).ok


def test_a_delete_cut_short_leaves_a_consistent_store(store: Store) -> None:
    """Killed after moving the refs away but before removing them: no dataset, and the
    moved refs are a temp folder, which cleaning dead writers' temp files removes."""
    import shutil

    from quarry.store.tempfiles import Stale, remove_stale

    put_bytes(store, "a", b"a")
    real = shutil.rmtree
    shutil.rmtree = lambda *a, **k: None  # type: ignore[assignment]
    try:
        store.delete_dataset("a")
    finally:
        shutil.rmtree = real
    assert store.datasets() == [] and check(store).ok
    (left,) = store.tmp_dir.iterdir()
    assert left.is_dir() and left not in store.stale_temps().files  # ours: we still run
    remove_stale(Stale((left,), 0, ()))  # as it is once this process is gone
    assert list(store.tmp_dir.iterdir()) == []
