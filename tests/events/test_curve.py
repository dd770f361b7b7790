"""ZeroMQ beyond loopback: refused without CURVE; with it, only the listed clients get in
(real REQ/REP and PUB/SUB sockets, real keys, the real ZAP handler)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth

from quarry.access import AccessPolicy
from quarry.config import Curve
from quarry.errors import BadConfig
from quarry.events.bus import Bus
from quarry.events.compat import CompatEndpoint
from quarry.events.curve import CurveKeys, Gatekeeper, load_keys
from quarry.store import Store
from tests.store.test_store import snap
from tests.support import free_port

Ctx = zmq.Context[zmq.Socket[bytes]]
PUBLIC = "tcp://0.0.0.0:{}"  # every address: reachable from elsewhere


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    c: Ctx = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """server.key(_secret), clients/planner.key, and a stranger's pair nobody let in."""
    folder = tmp_path / "keys"
    (folder / "clients").mkdir(parents=True)
    zmq.auth.create_certificates(folder, "server")
    zmq.auth.create_certificates(folder, "planner")
    zmq.auth.create_certificates(folder, "stranger")
    (folder / "planner.key").rename(folder / "clients" / "planner.key")
    return folder


def curve(keys: Path) -> CurveKeys:
    return load_keys(Curve(keys / "server.key_secret", keys / "clients"))


def client(ctx: Ctx, kind: int, keys: Path | None, name: str = "planner") -> zmq.Socket[bytes]:
    """A socket with ``name``'s keys (or none), timing out after 1.5 s."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 1500)
    if keys is not None:
        sock.curve_serverkey = zmq.auth.load_certificate(keys / "server.key")[0]
        public, secret = zmq.auth.load_certificate(keys / f"{name}.key_secret")
        assert secret is not None
        sock.curve_publickey, sock.curve_secretkey = public, secret
    return sock


@pytest.mark.parametrize("where", ["rep", "pub", "legacy_pub"])
def test_public_bind_without_curve_is_refused(store: Store, ctx: Ctx, where: str) -> None:
    endpoint = PUBLIC.format(free_port())
    with pytest.raises(BadConfig, match="beyond loopback"):
        if where == "rep":
            CompatEndpoint(store, ctx, endpoint)
        elif where == "pub":
            Bus(store, ctx, endpoint)
        else:
            Bus(store, ctx, f"tcp://127.0.0.1:{free_port()}", legacy_endpoint=endpoint)
    # Nothing listens: a plain client's PUT gets no answer and commits nothing.
    with client(ctx, zmq.REQ, None) as req:
        req.connect(endpoint.replace("0.0.0.0", "127.0.0.1"))
        req.send(b"=====PUT x\n\tpwned")
        with pytest.raises(zmq.Again):
            req.recv()
    assert store.datasets() == []


def test_public_rep_lets_in_only_listed_clients(store: Store, ctx: Ctx, keys: Path) -> None:
    gate = Gatekeeper(ctx, curve(keys))
    endpoint = PUBLIC.format(free_port())
    connect = endpoint.replace("0.0.0.0", "127.0.0.1")
    ep = CompatEndpoint(store, ctx, endpoint, gate=gate)
    ep.start()
    try:
        # A plain client and one with keys the server does not list: no answer, no commit.
        for who in (None, "stranger"):
            with client(ctx, zmq.REQ, None if who is None else keys,
                        who or "planner") as req:
                req.connect(connect)
                req.send(b"=====PUT qplan raw\n\tpwned")
                with pytest.raises(zmq.Again):
                    req.recv()
        assert store.datasets() == [] and ep.served == 0
        with client(ctx, zmq.REQ, keys) as req:
            req.connect(connect)
            req.send(b"=====PUT qplan raw\n\tapple,3")
            assert req.recv() == b"OK"
            req.send(b"=====GET qplan raw")
            assert req.recv().endswith(b"=====data\n\tapple,3")
    finally:
        ep.stop()
        ep.join(5)
        gate.stop()
    assert ep.served == 2


def test_public_pubs_publish_only_to_listed_clients(store: Store, ctx: Ctx,
                                                    keys: Path) -> None:
    gate = Gatekeeper(ctx, curve(keys))
    main, legacy = PUBLIC.format(free_port()), PUBLIC.format(free_port())
    bus = Bus(store, ctx, main, legacy_endpoint=legacy, gate=gate)
    bus.start()
    subs = []
    try:
        for endpoint in (main, legacy):
            for who in ("planner", "stranger", None):
                sub = client(ctx, zmq.SUB, None if who is None else keys, who or "planner")
                sub.setsockopt(zmq.SUBSCRIBE, b"")
                sub.connect(endpoint.replace("0.0.0.0", "127.0.0.1"))
                subs.append(sub)
        time.sleep(0.5)  # subscriptions (of those let in) reach the publisher
        store.commit(snap(store, "closed/plan", b"secret"))
        (main_ok, main_stranger, main_plain, legacy_ok, legacy_stranger,
         legacy_plain) = subs
        assert main_ok.recv_multipart()[0] == b"closed/plan commit"
        assert legacy_ok.recv_multipart() == [b"=====closed plan"]
        for sub in (main_stranger, main_plain, legacy_stranger, legacy_plain):
            with pytest.raises(zmq.Again):
                sub.recv_multipart()
    finally:
        for sub in subs:
            sub.close()
        bus.stop()
        bus.join(5)
        gate.stop()


def test_loopback_stays_plain_beside_a_curve_endpoint(store: Store, ctx: Ctx,
                                                      keys: Path) -> None:
    """The original clients on this machine keep connecting without keys."""
    gate = Gatekeeper(ctx, curve(keys))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ep = CompatEndpoint(store, ctx, endpoint, gate=gate)
    ep.start()
    try:
        with client(ctx, zmq.REQ, None) as req:
            req.connect(endpoint)
            req.send(b"=====PUT local\n\tok")
            assert req.recv() == b"OK"
    finally:
        ep.stop()
        ep.join(5)
        gate.stop()


def test_bad_keys_are_clear_config_errors(keys: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "junk.key").write_text('public-key = "not a key"\n')
    for server_key, clients, why in [
        (keys / "server.key", keys / "clients", "no secret key"),
        (tmp_path / "missing", keys / "clients", "cannot read"),
        (keys / "server.key_secret", empty, "no public keys"),
        (keys / "server.key_secret", tmp_path, "not a CURVE key"),
    ]:
        with pytest.raises(BadConfig, match=why):
            load_keys(Curve(server_key, clients))


def test_closed_datasets_only_for_curve_clients(store: Store, ctx: Ctx, keys: Path) -> None:
    """The access policy that closes datasets over HTTP closes them over ZeroMQ too: a
    plain (loopback) client neither reads nor writes one, nor hears of its versions; a CURVE
    client the gate let in does."""
    policy = AccessPolicy("t0k", "127.0.0.1", closed=["closed"])
    store.commit(snap(store, "closed/plan", b"secret"))
    gate = Gatekeeper(ctx, curve(keys))
    local, public = f"tcp://127.0.0.1:{free_port()}", PUBLIC.format(free_port())
    eps = [CompatEndpoint(store, ctx, e, gate=gate, policy=policy) for e in (local, public)]
    pubs = [f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"]
    bus = Bus(store, ctx, pubs[0], legacy_endpoint=pubs[1], gate=gate, policy=policy)
    for t in (*eps, bus):
        t.start()
    subs = []
    try:
        for endpoint in pubs:
            sub = client(ctx, zmq.SUB, None)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(endpoint)
            subs.append(sub)
        time.sleep(0.5)
        with client(ctx, zmq.REQ, None) as req:
            req.connect(local)
            for msg in (b"=====GET closed plan", b"=====PUT closed plan\n\tx",
                        b"=====PUT closed new\n\tx"):
                req.send(msg)
                reply = req.recv()
                assert reply.startswith(b"ERROR: dataset closed is closed") and (
                    b"secret" not in reply), msg
            req.send(b"=====PUT open plan\n\tfine")
            assert req.recv() == b"OK"
        with client(ctx, zmq.REQ, keys) as req:
            req.connect(public.replace("0.0.0.0", "127.0.0.1"))
            req.send(b"=====GET closed plan")
            assert req.recv().endswith(b"=====data\n\tsecret")
        store.commit(snap(store, "closed/plan", b"secret 2"))
        store.commit(snap(store, "open/last", b"x"))
        # Plain subscribers hear of the open datasets only.
        main, legacy = subs
        assert main.recv_multipart()[0] == b"open/plan commit"
        assert main.recv_multipart()[0] == b"open/last commit"
        assert legacy.recv_multipart() == [b"=====open plan"]
        assert legacy.recv_multipart() == [b"=====open last"]
    finally:
        for sub in subs:
            sub.close()
        for t in (*eps, bus):
            t.stop()
            t.join(5)
        gate.stop()
    assert store.history("closed/plan")[0] != store.history("closed/plan")[-1]
    assert "closed/new" not in store.datasets()
