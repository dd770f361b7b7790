from __future__ import annotations

import itertools

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


def test_segments_rotate_and_offsets_stay_one_sequence(tmp_path: object) -> None:
    from pathlib import Path

    j = Journal(Path(str(tmp_path)) / "journal.jsonl", segment_bytes=600, keep=3)
    tail = Journal(j.path, segment_bytes=600, keep=3)  # a reader in another "process"
    offset, seen = 0, []
    for i in range(60):
        j.append(Event(f"d{i}", COMMIT, f"v{i}"))
        batch, offset = tail.read(offset)
        seen += [e.dataset for _, e in batch]
    assert seen == [f"d{i}" for i in range(60)]  # a tail reader misses nothing
    segs = j.segments()
    assert len(segs) == 3 and segs[0][0] > 0  # old segments were pruned
    assert offset == j.end() == segs[-1][0] + segs[-1][1].stat().st_size
    # Each segment's base is where the one before it ended.
    for (b1, p1), (b2, _) in itertools.pairwise(segs):
        assert b1 + p1.stat().st_size == b2
    # From 0 (pruned) a reader resumes at the oldest event kept and reads on in order.
    pos, rest, last = 0, [], -1
    while True:
        batch, pos = j.read(pos)
        if not batch:
            break
        assert all(p > last for p, _ in batch)
        last = batch[-1][0]
        rest += [int(e.dataset[1:]) for _, e in batch]
    assert rest == list(range(rest[0], 60)) and rest[0] > 0
    # An offset past the end (made up, or from a journal replaced since) reads from now on:
    # nothing of the history, then the next event.
    batch, now = j.read(10**9)
    assert batch == [] and now == j.end()
    j.append(Event("d60", "commit"))
    assert [e.dataset for _, e in j.read(now)[0]] == ["d60"]


def test_processes_appending_across_rotations_lose_nothing(tmp_path: object) -> None:
    import subprocess
    import sys
    from pathlib import Path

    path = Path(str(tmp_path)) / "journal.jsonl"
    code = ("import sys; from pathlib import Path; "
            "from quarry.store.journal import Event, Journal; "
            "j = Journal(Path(sys.argv[1]), segment_bytes=2000, keep=1000); "
            "[j.append(Event(f'{sys.argv[2]}-{i}', 'commit')) for i in range(200)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"p{k}"])
             for k in range(3)]
    for p in procs:
        assert p.wait(60) == 0
    j = Journal(path, segment_bytes=2000, keep=1000)
    pos, got = 0, []
    while batch := j.read(pos)[0]:
        got += [e.dataset for _, e in batch]
        pos = batch[-1][0]
    assert sorted(got) == sorted(f"p{k}-{i}" for k in range(3) for i in range(200))
    for k in range(3):  # each writer's events in its order
        assert [d for d in got if d.startswith(f"p{k}-")] == [f"p{k}-{i}" for i in range(200)]
    assert all(p.stat().st_size < 2000 + 200 for _, p in j.segments())
