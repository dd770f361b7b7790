from __future__ import annotations

from quarry.store import Store
from quarry.store.journal import ALIAS, COMMIT, Event, Journal
from tests.store.test_store import snap


def test_commits_and_alias_moves_are_journaled(store: Store) -> None:
    seen: list[Event] = []
    store.listeners.append(seen.append)
    start = store.journal.end()
    r1 = store.commit(snap(store, "a", b"1", "first"))
    store.commit(snap(store, "a", b"1"))  # unchanged: no event
    r2 = store.commit(snap(store, "a", b"2"))
    store.set_alias("a", "prod", r1.version)
    store.delete_alias("a", "prod")
    events, end = store.journal.read(start)
    assert [e for _, e in events] == seen
    assert [(e.event, e.version, e.parent) for e in seen] == [
        (COMMIT, r1.version, None), (COMMIT, r2.version, r1.version),
        (ALIAS, r1.version, None), (ALIAS, None, r1.version)]
    assert seen[0].extra["message"] == "first" and seen[2].extra["alias"] == "prod"
    assert seen[0].topic == "a commit" and seen[0].size == 1
    assert end == store.journal.end() and events[-1][0] == end
    # Resuming from an event's offset gives the events after it.
    assert [e for _, e in store.journal.read(events[1][0])[0]] == seen[2:]


def test_a_failing_listener_does_not_fail_the_commit(store: Store) -> None:
    def boom(event: Event) -> None:
        raise RuntimeError("listener bug")

    store.listeners.append(boom)
    assert store.commit(snap(store, "a", b"1")).created


def test_torn_and_partial_lines_are_skipped(tmp_path: object) -> None:
    from pathlib import Path

    j = Journal(Path(str(tmp_path)) / "j.jsonl")
    assert j.read(0) == ([], 0)
    j.append(Event("a", COMMIT, "v1"))
    with open(j.path, "ab") as f:
        f.write(b'{"dataset": "torn"\n{"dataset": "b", "event": "commit", "ti')
    events, off = j.read(0)
    assert [e.dataset for _, e in events] == ["a"]
    with open(j.path, "ab") as f:
        f.write(b'me": 1.0}\n')
    more, off2 = j.read(off)
    assert [e.dataset for _, e in more] == ["b"] and off2 == j.end()
