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


def test_publishes_commits_alias_moves_and_legacy_frames(store: Store, ctx: Ctx) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    bus = Bus(store, ctx, endpoint)
    bus.start()
    try:
        with subscriber(ctx, endpoint, b"") as sub:
            r = store.commit(snap(store, "qplan/raw", b"data"))
            store.set_alias("qplan/raw", "prod", r.version)
            got = [sub.recv_multipart() for _ in range(3)]
    finally:
        bus.stop()
        bus.join(5)
    assert got[0][0] == b"qplan/raw commit"
    body = orjson.loads(got[0][1])
    assert {k: body[k] for k in ("dataset", "event", "version", "parent", "size")} == {
        "dataset": "qplan/raw", "event": "commit", "version": r.version, "parent": None,
        "size": 4}
    assert body["time"] > 0
    assert got[1] == [b"=====qplan raw"]
    assert got[2][0] == b"qplan/raw alias" and orjson.loads(got[2][1])["alias"] == "prod"


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
    bus = Bus(store, ctx, endpoint, legacy=False, poll=30.0)  # no polling: wakes only
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
