"""The snapshot service endpoint: the handler, and a real REP socket driven by a separate
client process."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest
import zmq

from quarry.events.compat import CompatEndpoint, handle
from quarry.store import Store
from tests.support import free_port


def test_put_then_get_any_version(store: Store) -> None:
    assert handle(store, b"=====PUT qplan raw\n\tone\n\ttwo") == b"OK"
    v1 = store.require_head("qplan/raw")
    assert store.snapshot(v1).kind == "lines"
    assert handle(store, b"=====PUT qplan raw\n\tthree\n") == b"OK"
    assert handle(store, b"=====PUT qplan raw\n\tthree\n") == b"OK"  # unchanged
    assert len(store.history("qplan/raw")) == 2
    v2 = store.require_head("qplan/raw")
    assert handle(store, b"=====GET qplan raw") == (
        f"=====qplan raw\n\t{v2}\n=====data\n\tthree".encode())
    assert handle(store, b"=====GET qplan raw\n\t" + v1[:7].encode()) == (
        f"=====qplan raw\n\t{v1}\n=====data\n\tone\n\ttwo".encode())
    store.set_alias("qplan/raw", "prod", v1)
    assert handle(store, b"=====GET qplan raw\n\tprod").endswith(b"\tone\n\ttwo")


def test_empty_put_and_get(store: Store) -> None:
    assert handle(store, b"=====PUT empty") == b"OK"
    v = store.require_head("empty")
    assert handle(store, b"=====GET empty") == f"=====empty\n\t{v}\n=====data".encode()


@pytest.mark.parametrize("message", [
    b"", b"hello", b"\tbody", b"=====", b"=====PUT", b"=====GET ", b"=====DELETE x",
    b"=====PUT x\nnot tabbed", b"=====GET x\n\tv1\n\tv2", b"=====PUT a\n\tx\n=====PUT b\n\ty",
    b"=====GET nosuch", b"=====GET x\n\tabc", b"=====GET x\n\tffffff", b"=====PUT bad/../x",
    b"=====PUT a versions", b"=====GET x\n\tno-such-alias", b"\xff\xfe",
])
def test_bad_input_is_an_error_reply(store: Store, message: bytes) -> None:
    assert handle(store, b"=====PUT x\n\tkeep") == b"OK"
    before = store.history("x")
    reply = handle(store, message)
    assert reply.startswith(b"ERROR: "), reply
    assert store.history("x") == before
    assert store.datasets() == ["x"]


CLIENT = textwrap.dedent("""
    import sys, zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.RCVTIMEO, 10000)
    s.connect(sys.argv[1])
    for msg in [b"=====PUT qplan raw\\n\\talpha\\n\\tbeta", b"nonsense",
                b"=====GET qplan raw", b"=====GET qplan nothing"]:
        s.send(msg)
        print(repr(s.recv()))
    s.send_multipart([b"=====GET", b"qplan raw"])
    print(repr(s.recv()))
""")


@pytest.mark.slow
def test_real_endpoint_with_a_client_process(store: Store) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    ep = CompatEndpoint(store, ctx, endpoint)
    ep.start()
    try:
        out = subprocess.run([sys.executable, "-c", CLIENT, endpoint], capture_output=True,
                             timeout=60, check=True).stdout.decode().splitlines()
    finally:
        ep.stop()
        ep.join(5)
        ctx.term()
    head = store.require_head("qplan/raw")
    replies = [ast.literal_eval(x) for x in out]
    assert replies[0] == b"OK"
    assert replies[1].startswith(b"ERROR: line 1")
    assert replies[2] == f"=====qplan raw\n\t{head}\n=====data\n\talpha\n\tbeta".encode()
    assert replies[3].startswith(b"ERROR: ") and b"no dataset" in replies[3]
    assert replies[4].startswith(b"ERROR: expected one frame")
    assert ep.served == 5


def test_reply_cache_follows_head_and_aliases(store: Store) -> None:
    from quarry.events.compat import ReplyCache

    cache = ReplyCache(entries=2)
    assert handle(store, b"=====PUT r\n\tone", cache) == b"OK"
    assert handle(store, b"=====GET r", cache).endswith(b"\tone")
    v1 = store.require_head("r")
    assert handle(store, b"=====PUT r\n\ttwo", cache) == b"OK"
    assert handle(store, b"=====GET r", cache).endswith(b"\ttwo")
    store.set_alias("r", "prod", v1)
    assert handle(store, b"=====GET r\n\tprod", cache).endswith(b"\tone")
    store.set_alias("r", "prod", None)
    assert handle(store, b"=====GET r\n\tprod", cache).endswith(b"\ttwo")
    assert handle(store, b"=====PUT r\n\tthree", cache) == b"OK"  # evicts the oldest
    assert handle(store, b"=====GET r\n\t" + v1[:9].encode(), cache).endswith(b"\tone")
