"""The bus: real PUB/SUB sockets; commits from this process and from another one."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import orjson
import pytest
import zmq

from quarry.events.bus import Bus
from quarry.store import Store
from tests.store.test_store import snap
from tests.support import free_port, quarry_cmd

Ctx = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    c: Ctx = zmq.Context()
    yield c
    c.destroy(linger=0)


def subscriber(ctx: Ctx, endpoint: str, topic: bytes) -> zmq.Socket[bytes]:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.setsockopt(zmq.RCVTIMEO, 10_000)
    sub.connect(endpoint)
    time.sleep(0.3)  # let the subscription reach the publisher (ZeroMQ's slow joiner)
    return sub


def drain(sock: zmq.Socket[bytes], wait: float = 0.5) -> list[list[bytes]]:
    """Every message that arrives within ``wait`` seconds of the last one."""
    got = []
    while sock.poll(int(wait * 1000)):
        got.append(sock.recv_multipart())
    return got


def test_main_endpoint_carries_only_json_events(store: Store, ctx: Ctx) -> None:
    """A subscriber to everything on the main PUB (as Quarry's own clients are) gets two-frame
    JSON events only: the original service's single frames have an endpoint of their own."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bus = Bus(store, ctx, endpoint)
    bus.start()
    try:
        with subscriber(ctx, endpoint, b"") as sub:
            r = store.commit(snap(store, "qplan/raw", b"data"))
            store.set_alias("qplan/raw", "prod", r.version)
            got = drain(sub)
    finally:
        bus.stop()
        bus.join(5)
    assert [m[0] for m in got] == [b"qplan/raw commit", b"qplan/raw alias"]
    assert all(len(m) == 2 for m in got), got
    body = orjson.loads(got[0][1])
    assert {k: body[k] for k in ("dataset", "event", "version", "parent", "size")} == {
        "dataset": "qplan/raw", "event": "commit", "version": r.version, "parent": None,
        "size": 4}
    assert body["time"] > 0
    assert orjson.loads(got[1][1])["alias"] == "prod"


def test_legacy_endpoint_carries_only_the_original_frames(store: Store, ctx: Ctx) -> None:
    """An original subscriber subscribes to everything and reads one frame per message:
    ``=====<resource>`` for each new version, nothing for alias moves or failures."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    legacy = f"tcp://127.0.0.1:{free_port()}"
    bus = Bus(store, ctx, endpoint, legacy_endpoint=legacy)
    bus.start()
    try:
        with subscriber(ctx, legacy, b"") as old, subscriber(ctx, endpoint, b"") as new:
            r = store.commit(snap(store, "qplan/raw", b"data"))
            store.set_alias("qplan/raw", "prod", r.version)
            store.commit(snap(store, "solo", b"x"))
            got_old, got_new = drain(old), drain(new)
    finally:
        bus.stop()
        bus.join(5)
    assert got_old == [[b"=====qplan raw"], [b"=====solo"]]
    assert [m[0] for m in got_new] == [b"qplan/raw commit", b"qplan/raw alias", b"solo commit"]
    assert all(len(m) == 2 for m in got_new)


def test_address_in_use_is_a_clear_error(store: Store, ctx: Ctx) -> None:
    from quarry.errors import Unavailable

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bus = Bus(store, ctx, endpoint)
    with pytest.raises(Unavailable, match="cannot listen"):
        Bus(store, ctx, endpoint)
    bus.start()
    bus.stop()
    bus.join(5)


@pytest.mark.slow
def test_commits_by_another_process_are_published(store: Store, ctx: Ctx,
                                                  tmp_path: object) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bus = Bus(store, ctx, endpoint)
    bus.start()
    try:
        with subscriber(ctx, endpoint, b"from/cli ") as sub:
            subprocess.run(quarry_cmd("put", "from/cli", "-", "--kind", "document", "--data",
                                      str(store.root)), input=b"hello", check=True, timeout=60)
            topic, body = sub.recv_multipart()
    finally:
        bus.stop()
        bus.join(5)
    assert topic == b"from/cli commit"
    assert orjson.loads(body)["version"] == store.require_head("from/cli")


def test_events_keep_journal_order_when_another_writer_comes_between(store: Store,
                                                                    ctx: Ctx) -> None:
    """This process's commits are published by the committing thread; a commit another
    process journaled before one of them is published first, by the bus thread."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bus = Bus(store, ctx, endpoint, poll=30.0)  # no polling: wakes only
    bus.start()
    other = Store(store.root)  # another writer: the bus hears nothing of its commits
    try:
        with subscriber(ctx, endpoint, b"") as sub:
            a = store.commit(snap(store, "k/a", b"1")).version
            b = other.commit(snap(other, "k/b", b"2")).version
            c = store.commit(snap(store, "k/c", b"3")).version
            got = [orjson.loads(sub.recv_multipart()[1])["version"] for _ in range(3)]
    finally:
        bus.stop()
        bus.join(5)
    assert got == [a, b, c]
    assert bus.published == 3
