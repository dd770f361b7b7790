"""DELETE /datasets/<name> and quarry rm: a write, under the access policy, seen at once by
the server that made it and within the refresh interval by any other."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from quarry.datasets.kinds import put_bytes
from quarry.datasets.lines import put_lines
from quarry.engine import Engine
from quarry.store import Store
from quarry.store.fsck import check
from tests.conftest import make_client
from tests.server.test_events_routes import events
from tests.support import FIXTURES, free_port, quarry_cmd, running

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"


def test_delete_a_dataset(engine: Engine, store: Store) -> None:
    v = put_lines(store, "frank", FRANKENSTEIN).version
    store.set_alias("frank", "prod", None)
    put_bytes(store, "other", b"x")
    c = make_client(engine, default_dataset="frank")
    hot = c.app.hot_routes  # type: ignore[attr-defined]
    assert hot.respond(b"GET", b"/lines/2").startswith(b"HTTP/1.1 200")
    end = store.journal.end()
    r = c.delete("/datasets/frank")
    assert r.status_code == 200
    assert r.json() == {"dataset": "frank", "deleted": True, "version": v,
                        "aliases": {"prod": v}}
    # Gone at once, on the hot path and the ASGI routes alike.
    assert hot.respond(b"GET", b"/lines/2").startswith(b"HTTP/1.1 404")
    assert hot.respond(b"GET", b"/datasets/frank/lines/2").startswith(b"HTTP/1.1 404")
    for url in ("/datasets/frank", "/datasets/frank/versions", f"/lines/2?version={v}",
                f"/datasets/frank/data?version={v}"):
        assert c.get(url).status_code == 404, url
    assert [d["name"] for d in c.get("/datasets").json()] == ["other"]
    got = events(c, since=end, limit=1)
    assert [(e, d["dataset"], d["parent"]) for _, e, d in got] == [("deleted", "frank", v)]
    assert c.delete("/datasets/frank").status_code == 404
    assert c.delete("/datasets/bad..name").status_code == 400
    # Below a dataset: not a dataset, the 405 of a read-only route.
    r = c.delete("/datasets/other/lines/1")
    assert r.status_code == 405 and "DELETE" not in r.headers["allow"]
    assert "DELETE" in c.request("POST", "/datasets/other").headers["allow"]
    assert check(store).ok


def test_delete_needs_the_token_and_keeps_closed_datasets_closed(engine: Engine,
                                                                  store: Store) -> None:
    put_bytes(store, "open", b"x")
    put_bytes(store, "secret", b"s")
    c = make_client(engine, token="t0k", closed=("secret",))
    for name in ("open", "secret", "nope"):
        r = c.delete(f"/datasets/{name}")
        assert r.status_code == 401, name
        assert "secret" not in r.text or name == "secret"
    assert store.datasets() == ["open", "secret"]
    auth = {"authorization": "Bearer t0k"}
    assert c.delete("/datasets/nope", headers=auth).status_code == 404
    assert c.delete("/datasets/secret", headers=auth).status_code == 200
    assert store.datasets() == ["open"]


def test_quarry_rm_from_another_process(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", str(FRANKENSTEIN), "--name", "frank", "--data", str(data),
                      "--port", str(port))
    with running(args, f"{url}/healthz"), httpx.Client(base_url=url) as c:
        assert c.get("/lines/2").status_code == 200
        assert c.get("/datasets/frank/lines/2").status_code == 200
        rm = subprocess.run(quarry_cmd("rm", "frank", "--data", str(data), "--json"),
                            capture_output=True, text=True, check=False)
        assert rm.returncode == 0, rm.stderr
        assert '"deleted":true' in rm.stdout.replace(" ", "")
        deadline = time.monotonic() + 3
        while c.get("/lines/2").status_code == 200:  # the hot path, HEAD cached 0.5 s
            assert time.monotonic() < deadline, "the server still serves a deleted dataset"
            time.sleep(0.05)
        assert c.get("/lines/2").status_code == 404
        assert c.get("/datasets/frank").status_code == 404
        assert c.get("/datasets").json() == []
    rm = subprocess.run(quarry_cmd("rm", "frank", "--data", str(data)),
                        capture_output=True, text=True, check=False)
    assert rm.returncode != 0 and "frank" in rm.stderr
    fsck = subprocess.run(quarry_cmd("fsck", "--data", str(data)), capture_output=True,
                          text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout
