"""``quarry up`` end to end: real HTTP, PUB/SUB, REP and SSE sockets; a pipeline chain; clean
shutdown on SIGTERM."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import zmq

from tests.support import free_port, quarry_cmd, running

pytestmark = pytest.mark.slow

CONFIG = """
data: {data}
http: {{host: 127.0.0.1, port: {http}, workers: {workers}}}
events: {{pub: "tcp://127.0.0.1:{pub}", legacy_pub: "tcp://127.0.0.1:{legacy}"}}
compat: {{rep: "tcp://127.0.0.1:{rep}"}}
pipelines:
  - name: condition
    source: qplan/raw
    target: qplan/conditioned
    run: "sed -e '/^#/d' -e 's/ //g' | sort"
  - name: results
    source: qplan/conditioned
    target: qplan/results
    call: quarry.demo.qplan:totals
"""

REQ = textwrap.dedent("""
    import sys, zmq
    s = zmq.Context().socket(zmq.REQ)
    s.setsockopt(zmq.RCVTIMEO, 10000)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(sys.argv[1])
    for msg in sys.argv[2:]:
        s.send(msg.encode())
        print(repr(s.recv()), flush=True)
""")


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met")


@pytest.mark.parametrize("workers", [1, 2])
def test_up_end_to_end(tmp_path: Path, workers: int) -> None:
    """With 2 workers the HTTP server runs in other processes than the bus and pipelines:
    their commits must reach them (and the metrics) all the same."""
    ports = {"http": free_port(), "pub": free_port(), "rep": free_port(),
             "legacy": free_port()}
    cfg = tmp_path / "quarry.yaml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", workers=workers, **ports))
    base = f"http://127.0.0.1:{ports['http']}"
    rep = f"tcp://127.0.0.1:{ports['rep']}"
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sse_lines: list[str] = []

    def read_sse() -> None:
        with httpx.stream("GET", f"{base}/events", params={"dataset": "qplan/*", "limit": 3},
                          timeout=30) as r:
            sse_lines.extend(r.iter_lines())

    with running(quarry_cmd("up", "--config", str(cfg)), f"{base}/healthz") as proc, \
            ctx.socket(zmq.SUB) as sub, ctx.socket(zmq.SUB) as legacy, \
            ctx.socket(zmq.SUB) as everything:
        sub.setsockopt(zmq.SUBSCRIBE, b"qplan/")
        sub.setsockopt(zmq.RCVTIMEO, 20_000)
        sub.connect(f"tcp://127.0.0.1:{ports['pub']}")
        # The original subscribers subscribe to everything, on an endpoint of their own.
        legacy.setsockopt(zmq.SUBSCRIBE, b"")
        legacy.setsockopt(zmq.RCVTIMEO, 20_000)
        legacy.connect(f"tcp://127.0.0.1:{ports['legacy']}")
        everything.setsockopt(zmq.SUBSCRIBE, b"")
        everything.setsockopt(zmq.RCVTIMEO, 20_000)
        everything.connect(f"tcp://127.0.0.1:{ports['pub']}")
        sse = threading.Thread(target=read_sse)
        sse.start()
        time.sleep(0.5)  # subscriptions reach the publisher

        # 1. An HTTP PUT runs the chain raw -> conditioned -> results.
        r = httpx.put(f"{base}/datasets/qplan/raw", params={"kind": "lines"},
                      content=b"# stock\napple, 3\npear,2\napple,4\n")
        assert r.status_code == 201
        raw_v1 = r.json()["version"]
        topics = [sub.recv_multipart()[0] for _ in range(3)]
        assert topics == [b"qplan/raw commit", b"qplan/conditioned commit",
                          b"qplan/results commit"]
        assert [legacy.recv_multipart() for _ in range(3)] == [
            [b"=====qplan raw"], [b"=====qplan conditioned"], [b"=====qplan results"]]
        main = [everything.recv_multipart() for _ in range(3)]
        assert [m[0] for m in main] == topics and all(len(m) == 2 for m in main)
        assert httpx.get(f"{base}/datasets/qplan/results/data").content == b"apple,7\npear,2\n"
        cond = httpx.get(f"{base}/datasets/qplan/conditioned/versions").json()["versions"][0]
        assert cond["lineage"] == [{"dataset": "qplan/raw", "version": raw_v1,
                                    "stage": "condition"}]
        metrics = httpx.get(f"{base}/metrics").text
        assert 'quarry_events_total{event="commit"}' in metrics
        assert 'quarry_pipeline_runs_total{outcome="done",stage="condition"}' in metrics or \
            'quarry_pipeline_runs_total{stage="condition",outcome="done"}' in metrics
        sse.join(30)
        events = [orjson.loads(x[6:]) for x in sse_lines if x.startswith("data: ")]
        assert [e["dataset"] for e in events] == ["qplan/raw", "qplan/conditioned",
                                                  "qplan/results"]

        # 2. The snapshot service's clients, from another process.
        out = subprocess.run(
            [sys.executable, "-c", REQ, rep, "=====PUT qplan raw\n\tkiwi,5\n\tapple,1",
             "not a stacked stream"], capture_output=True, timeout=60, check=True)
        replies = [ast.literal_eval(x) for x in out.stdout.decode().splitlines()]
        assert replies[0] == b"OK" and replies[1].startswith(b"ERROR: ")
        assert legacy.recv_multipart() == [b"=====qplan raw"]
        wait_for(lambda: httpx.get(f"{base}/datasets/qplan/results/data").content
                 == b"apple,1\nkiwi,5\n")
        out = subprocess.run([sys.executable, "-c", REQ, rep, "=====GET qplan results",
                              f"=====GET qplan raw\n\t{raw_v1[:8]}"],
                             capture_output=True, timeout=60, check=True)
        got = [ast.literal_eval(x) for x in out.stdout.decode().splitlines()]
        assert got[0].endswith(b"=====data\n\tapple,1\n\tkiwi,5")
        assert got[1] == (f"=====qplan raw\n\t{raw_v1}\n=====data\n\t# stock\n\tapple, 3\n"
                          "\tpear,2\n\tapple,4").encode()

        # 3. A CLI put from another process is published and processed too; a bad row
        # fails the results stage: nothing committed, a failed event.
        while True:  # drain what the earlier steps published
            try:
                sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
        results_before = httpx.get(f"{base}/datasets/qplan/results/versions").json()
        subprocess.run(quarry_cmd("put", "qplan/raw", "-", "--data", str(tmp_path / "data")),
                       input=b"no comma\n", check=True, timeout=60, capture_output=True)
        seen = []
        while b"qplan/results failed" not in seen:
            topic, body = sub.recv_multipart()
            seen.append(topic)
        assert "no comma" in orjson.loads(body)["error"]
        assert httpx.get(f"{base}/datasets/qplan/results/versions").json() == results_before

        # 4. SIGTERM stops everything cleanly.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert b"quarry up: stopped" in err
        assert (b"(2 workers)" in err) == (workers == 2)
    ctx.term()


def test_up_refuses_a_busy_port(tmp_path: Path) -> None:
    ports = {"http": free_port(), "pub": free_port(), "rep": free_port(),
             "legacy": free_port()}
    cfg = tmp_path / "quarry.yaml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", workers=1, **ports))
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    with ctx.socket(zmq.PUB) as busy:
        busy.bind(f"tcp://127.0.0.1:{ports['pub']}")
        r = subprocess.run(quarry_cmd("up", "--config", str(cfg)), capture_output=True,
                           timeout=60)
    ctx.term()
    assert r.returncode == 6 and b"cannot listen" in r.stderr



def test_up_refuses_a_busy_http_port_before_starting_anything(tmp_path: Path) -> None:
    import socket

    ports = {"http": free_port(), "pub": free_port(), "rep": free_port(),
             "legacy": free_port()}
    cfg = tmp_path / "quarry.yaml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", workers=1, **ports))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["http"]))
        busy.listen()
        r = subprocess.run(quarry_cmd("up", "--config", str(cfg)), capture_output=True,
                           timeout=60)
    assert r.returncode == 6 and b"the port is in use" in r.stderr
    assert not (tmp_path / "data").exists()  # nothing made, nothing announced


@pytest.mark.parametrize("key", ["pub", "legacy", "rep"])
def test_up_refuses_public_zmq_without_curve(tmp_path: Path, key: str) -> None:
    """The REP endpoint's PUTs run the pipelines' shell commands and the PUBs name every
    dataset: beyond loopback they need CURVE; without it nothing starts, exit 2."""
    ports = {"http": free_port(), "pub": free_port(), "rep": free_port(),
             "legacy": free_port()}
    cfg = tmp_path / "quarry.yaml"
    text = CONFIG.format(data=tmp_path / "data", workers=1, **ports)
    cfg.write_text(text.replace(f"127.0.0.1:{ports[key]}", f"0.0.0.0:{ports[key]}"))
    r = subprocess.run(quarry_cmd("up", "--config", str(cfg)), capture_output=True,
                       timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(b"error: config: ")
    assert b"listens beyond loopback" in r.stderr and b"curve" in r.stderr
    assert not (tmp_path / "data").exists()  # nothing made, nothing announced


def test_truncated_put_commits_nothing(tmp_path: Path) -> None:
    import socket

    ports = {"http": free_port(), "pub": free_port(), "rep": free_port(),
             "legacy": free_port()}
    cfg = tmp_path / "quarry.yaml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", workers=1, **ports))
    base = f"http://127.0.0.1:{ports['http']}"
    with running(quarry_cmd("up", "--config", str(cfg)), f"{base}/healthz"):
        assert httpx.put(f"{base}/datasets/t", content=b"kept").status_code == 201
        with socket.create_connection(("127.0.0.1", ports["http"])) as s:
            s.sendall(b"PUT /datasets/t HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n"
                      + b"partial" * 100)
            time.sleep(0.3)
        time.sleep(0.5)  # the server sees the disconnect and aborts the writer
        assert httpx.get(f"{base}/datasets/t/data").content == b"kept"
        assert len(httpx.get(f"{base}/datasets/t/versions").json()["versions"]) == 1
    assert list((tmp_path / "data" / "tmp").iterdir()) == []


def test_up_access_closes_http_and_zeromq_alike(tmp_path: Path) -> None:
    """`access` in quarry.yaml: one policy for the HTTP app and the ZeroMQ endpoint (its
    loopback clients carry no credentials, so a closed dataset is refused to them)."""
    ports = {"http": free_port(), "pub": free_port(), "rep": free_port(),
             "legacy": free_port()}
    cfg = tmp_path / "quarry.yaml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", workers=1, **ports)
                   + "access: {token: t0k, closed: [vault]}\n")
    base = f"http://127.0.0.1:{ports['http']}"
    auth = {"authorization": "Bearer t0k"}
    with running(quarry_cmd("up", "--config", str(cfg)), f"{base}/healthz"):
        assert httpx.put(f"{base}/datasets/open", content=b"x").status_code == 401
        assert httpx.put(f"{base}/datasets/open", content=b"x", headers=auth).status_code == 201
        assert httpx.put(f"{base}/datasets/vault/a", content=b"secret",
                         headers=auth).status_code == 201
        assert httpx.get(f"{base}/datasets/vault/a/data").status_code == 401
        assert "vault" not in httpx.get(f"{base}/datasets").text
        out = subprocess.run([sys.executable, "-c", REQ, f"tcp://127.0.0.1:{ports['rep']}",
                              "=====GET vault a", "=====GET open"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        replies = [ast.literal_eval(line) for line in out.splitlines()]
        assert replies[0].startswith(b"ERROR: dataset vault is closed")
        assert replies[1].endswith(b"=====data\n\tx")
