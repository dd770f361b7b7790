"""Faults with real processes: a remote server killed or frozen, replicas taking over, a pool
worker killed, Ray actors killed under load."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from quarry.cluster import Dispatcher, Policy, PoolBackend, wire
from quarry.cluster.ops import Task
from quarry.cluster.remote import RemoteBackend
from quarry.datasets.records import RecordsView
from quarry.engine import Engine
from quarry.errors import BadUpstream, ShardTimeout, ShardUnavailable
from quarry.query import iplog
from quarry.query.model import DistinctQuery, FindQuery, Window
from tests.support import free_port, quarry_cmd, running

Q = DistinctQuery(Window(), 50)


def _same(a: iplog.Distinct, b: iplog.Distinct) -> bool:
    return (a.distinct, a.rows, a.counts.tolist(), a.ips.tobytes()) == (
        b.distinct, b.rows, b.counts.tolist(), b.ips.tobytes())


@pytest.fixture
def doomed(data_dir: Path) -> Iterator[tuple[str, int]]:
    """A second real server, which the test may kill or freeze: (url, pid)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(quarry_cmd("serve", "--data", str(data_dir), "--port", str(port)),
                 f"{url}/health") as proc:
        try:
            yield url, proc.pid
        finally:
            # A frozen server must be able to stop.
            os.killpg(proc.pid, signal.SIGCONT)


def _kill(pid: int) -> None:
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.2)


def test_down_server_fails_the_query_naming_it(server: str, doomed: tuple[str, int],
                                               data_dir: Path, view: RecordsView,
                                               caplog: pytest.LogCaptureFixture) -> None:
    url, pid = doomed
    _kill(pid)
    d = Dispatcher(Engine(data_dir), RemoteBackend(((server,), (url,)), timeout_s=5))
    try:
        with caplog.at_level("WARNING", logger="quarry"), \
                pytest.raises(ShardUnavailable) as e:
            d.run(view, Q)
        assert url in e.value.detail and "unreachable" in e.value.detail
    finally:
        d.close()
    # The shard's error is logged with the dataset and version it concerns.
    rec = next(r for r in caplog.records if r.name == "quarry.shards")
    assert rec.q_dataset == view.dataset and rec.q_version == view.version  # type: ignore[attr-defined]


def test_down_server_gives_a_partial_answer_by_policy(server: str, doomed: tuple[str, int],
                                                      data_dir: Path,
                                                      view: RecordsView) -> None:
    url, pid = doomed
    _kill(pid)
    d = Dispatcher(Engine(data_dir), RemoteBackend(((server,), (url,)), timeout_s=5),
                   policy=Policy(on_error="partial"))
    try:
        a = d.run(view, Q)
        assert a.partial and len(a.missing) == 1 and url in a.missing[0]
        good = d.layout(view)[0]
        assert _same(a.result, iplog.distinct(view.subset(good.chunks), Q))
    finally:
        d.close()


def test_frozen_server_times_out_naming_it(server: str, doomed: tuple[str, int],
                                           data_dir: Path, view: RecordsView) -> None:
    url, pid = doomed
    os.killpg(pid, signal.SIGSTOP)
    for policy in ("fail", "partial"):
        d = Dispatcher(Engine(data_dir), RemoteBackend(((server,), (url,)), timeout_s=1.0),
                       policy=Policy(on_error=policy, timeout_s=1.0))  # type: ignore[arg-type]
        try:
            t = time.monotonic()
            if policy == "fail":
                with pytest.raises(ShardTimeout) as e:
                    d.run(view, Q)
                assert url in e.value.detail
            else:
                a = d.run(view, Q)
                assert a.partial and url in a.missing[0]
            assert time.monotonic() - t < 3.0
        finally:
            d.close()


def test_queries_go_to_a_healthy_replica(server: str, doomed: tuple[str, int],
                                         data_dir: Path, view: RecordsView) -> None:
    url, pid = doomed
    _kill(pid)
    backend = RemoteBackend(((url, server), (server, url)), timeout_s=5)
    d = Dispatcher(Engine(data_dir), backend)
    try:
        for _ in range(6):
            assert _same(d.run(view, Q).result, iplog.distinct(view, Q))
        health = {r["url"]: r["healthy"] for r in backend.replicas(d.layout(view)[0])}
        assert health == {url: False, server: True}
    finally:
        d.close()


def test_killed_pool_worker_is_replaced(data_dir: Path, view: RecordsView) -> None:
    backend = PoolBackend(data_dir, 2)
    backend.start()
    d = Dispatcher(Engine(data_dir), backend, shards=4)
    try:
        assert _same(d.run(view, Q).result, iplog.distinct(view, Q))
        assert backend._pool is not None
        pids = list(backend._pool._processes)  # the pool's workers, not its helpers
        assert len(pids) == 2
        victim = psutil.Process(pids[0])
        victim.kill()
        victim.wait(5)
        for _ in range(3):
            assert _same(d.run(view, Q).result, iplog.distinct(view, Q))
    finally:
        d.close()


@pytest.mark.slow
def test_ray_actor_killed_every_second_under_load(ray_cluster: object, data_dir: Path,
                                                  view: RecordsView) -> None:
    from quarry.cluster.ray_backend import RayBackend

    rb = RayBackend(data_dir, 4)
    rb.start()
    d = Dispatcher(Engine(data_dir), rb)
    ips = tuple(c.ip[7].tobytes() for c in view.chunks[:10])
    fq = FindQuery(ips, Window(), 100)
    want = iplog.find_page(view, fq).hits.ts.tolist()
    want_d = iplog.distinct(view, Q)
    failures: list[str] = []
    latencies: list[float] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            t = time.monotonic()
            try:
                ok = d.run(view, fq).result.hits.ts.tolist() == want and _same(
                    d.run(view, Q).result, want_d)
                if not ok:
                    failures.append("wrong answer")
            except Exception as e:
                failures.append(repr(e))
            latencies.append(time.monotonic() - t)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for th in threads:
        th.start()
    rng = random.Random(5)
    try:
        for _ in range(8):
            time.sleep(1.0)
            group = rb.actors[rng.randrange(len(rb.actors))]
            rb.ray.kill(group[0], no_restart=False)
    finally:
        stop.set()
        for th in threads:
            th.join(60)
        d.close()
    assert not failures, failures[:3]
    assert len(latencies) > 20
    assert max(latencies) < 20.0  # bounded: an actor restart, then the retried part


@pytest.mark.slow
def test_ray_queries_go_direct_and_through_ray_while_an_actor_restarts(
        ray_cluster: object, data_dir: Path, view: RecordsView) -> None:
    from quarry.cluster.ray_backend import RayBackend

    ips = tuple(c.ip[3].tobytes() for c in view.chunks[:6])
    fq = FindQuery(ips, Window(), 100)
    want = iplog.find_page(view, fq).hits.ts.tolist()
    rb = RayBackend(data_dir, 1)
    rb.start()
    d = Dispatcher(Engine(data_dir), rb, shards=1)
    plain = Dispatcher(Engine(data_dir), RayBackend(data_dir, 1, direct=False), shards=1)
    try:
        link = rb._links[0][0]
        before = link.channel()
        assert before is not None
        assert d.run(view, fq).result.hits.ts.tolist() == want
        assert before._idle, "the query did not use the actor's channel"
        rb.ray.kill(rb.actors[0][0], no_restart=False)
        # The channel is dead: the first query falls back to a Ray call, which waits for the
        # restarted actor; later ones go through Ray until its new address is known.
        for _ in range(3):
            assert d.run(view, fq).result.hits.ts.tolist() == want
        deadline = time.monotonic() + 30
        while (link.channel() in (None, before)) and time.monotonic() < deadline:
            assert d.run(view, fq).result.hits.ts.tolist() == want
            time.sleep(0.05)
        after = link.channel()
        assert after is not None and after is not before
        assert d.run(view, fq).result.hits.ts.tolist() == want
        assert after._idle, "the query did not use the restarted actor's channel"
        assert plain.run(view, fq).result.hits.ts.tolist() == want
        assert plain.status()["transport"] == "ray calls"
        assert d.status()["transport"] == "direct connections"
    finally:
        d.close()
        plain.close()


@pytest.mark.parametrize("answer", [b"\x00\x01garbage", wire.pack([1, 2]), wire.pack(5),
                                    wire.pack({"partial": 1, "missing": "x"})],
                         ids=["garbage", "a list", "an int", "missing not a list"])
def test_a_malformed_answer_is_the_peers_fault(answer: bytes) -> None:
    """A peer answering 200 with something other than a partial: 502 naming it, never a
    400 blaming the caller (or a KeyError)."""
    backend = RemoteBackend((("http://peer",),), timeout_s=5)
    backend._client = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=answer)))
    try:
        with pytest.raises(BadUpstream, match="http://peer"):
            backend._call("http://peer", Task("a", "v", (0,), DistinctQuery()))
    finally:
        backend.close()
