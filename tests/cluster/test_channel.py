"""Direct connections to shard workers: answers, errors, wrong keys, dead and slow workers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from quarry.cluster.channel import Channel, ChannelDown, ChannelServer
from quarry.errors import BadRequest

KEY = b"k" * 32


def handler(message: bytes) -> bytes:
    if message == b"bad":
        raise BadRequest("bad message")
    if message.startswith(b"sleep"):
        time.sleep(float(message[5:]))
    return message[::-1]


@pytest.fixture
def server() -> Iterator[ChannelServer]:
    s = ChannelServer("127.0.0.1", KEY, handler)
    yield s
    s.close()


def test_answers_and_reuses_one_connection(server: ChannelServer) -> None:
    ch = Channel(server.address, KEY)
    big = bytes(range(256)) * 400  # over 16 KiB: header and body go in two writes
    for msg in (b"abc", big, b""):
        assert ch.send(msg).result(5) == msg[::-1]
    assert len(ch._idle) == 1
    ch.close()


def test_concurrent_calls_each_get_their_own_answer(server: ChannelServer) -> None:
    ch = Channel(server.address, KEY)
    calls = [(i, ch.send(b"sleep0.05" + str(i).encode())) for i in range(5)]
    for i, call in calls:
        assert call.result(5) == (b"sleep0.05" + str(i).encode())[::-1]
    ch.close()


def test_a_worker_error_is_raised_as_itself(server: ChannelServer) -> None:
    ch = Channel(server.address, KEY)
    with pytest.raises(BadRequest, match="bad message"):
        ch.send(b"bad").result(5)
    assert ch.send(b"ok").result(5) == b"ko"  # the connection is still good
    ch.close()


def test_a_wrong_key_is_refused(server: ChannelServer) -> None:
    with pytest.raises(ChannelDown, match="cannot connect"):
        Channel(server.address, b"x" * 32).send(b"abc")
    assert Channel(server.address, KEY).send(b"abc").result(5) == b"cba"  # still serving


def test_a_slow_answer_times_out_and_the_connection_is_dropped(server: ChannelServer) -> None:
    ch = Channel(server.address, KEY)
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        ch.send(b"sleep0.5").result(0.1)
    assert time.monotonic() - t < 0.4
    assert ch._idle == []  # its late answer must not be read by the next call
    assert ch.send(b"next").result(5) == b"txen"
    ch.close()


WORKER = """
import sys, time
from quarry.cluster.channel import ChannelServer
s = ChannelServer("127.0.0.1", b"k" * 32, lambda m: (time.sleep(0.3), m)[1])
print(s.address[1], flush=True)
time.sleep(60)
"""


def test_a_killed_worker_makes_the_channel_down() -> None:
    proc = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ch = Channel(("127.0.0.1", int(proc.stdout.readline())), KEY)
        assert ch.send(b"x").result(5) == b"x"
        call = ch.send(b"y")
        threading.Timer(0.05, proc.kill).start()
        with pytest.raises(ChannelDown, match="hung up"):
            call.result(5)
        proc.wait(5)
        with pytest.raises(ChannelDown):
            ch.send(b"z").result(5)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_listener_that_never_answers_the_key_exchange_is_given_up_on() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts, then says nothing
        t = time.monotonic()
        with pytest.raises(ChannelDown, match="cannot connect"):
            Channel(mute.getsockname()[:2], KEY).send(b"abc")
        assert time.monotonic() - t < 5


def test_nothing_listening_is_a_channel_down() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        address = s.getsockname()[:2]
    with pytest.raises(ChannelDown, match="cannot connect"):
        Channel(address, KEY).send(b"abc")


def test_a_client_that_stalls_in_the_key_exchange_does_not_hold_up_others(
        server: ChannelServer) -> None:
    import socket

    with socket.create_connection(server.address):  # connects, then says nothing
        t = time.monotonic()
        assert Channel(server.address, KEY).send(b"abc").result(5) == b"cba"
        assert time.monotonic() - t < 0.5
