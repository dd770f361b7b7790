"""Every route the app declares, walked without the token against a real server: none of
them may reveal a closed dataset (its name, records, sizes, counts, events) or change state.

The route table comes from the app itself, so a route added later is walked too; a route
whose path parameters this walk cannot fill fails the test instead of being skipped.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

from quarry.cluster import wire
from quarry.cluster.ops import Task
from quarry.datasets.document import put_document
from quarry.datasets.lines import put_lines
from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.query.model import DistinctQuery, Window
from quarry.server.app import create_app
from quarry.server.settings import ServeSettings
from quarry.store import Store
from tests.support import FIXTURES, free_port, quarry_cmd, running

TOKEN = "t0k-\u00e9"  # not ASCII: a token compare on text raised on such bytes
AUTH = {"authorization": b"Bearer " + TOKEN.encode()}
CLOSED = "vaultq"  # a name nothing else in a response contains
SECRET_IP = "203.0.113.77"  # in the closed datasets' records only
T0 = 1_700_000_000
FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"


def _make_data(root: Path, tmp: Path) -> None:
    store = Store(root)
    csv = tmp / "vault.csv"
    csv.write_text("".join(f"{SECRET_IP},{T0 + i}\n" for i in range(500)))
    for name in (CLOSED, f"{CLOSED}/sub"):
        ingest(store, name, expand_sources([str(csv)]))
    store.set_alias(CLOSED, "prod", store.head(CLOSED))
    put_document(store, f"{CLOSED}/doc", b"the closed document")
    put_lines(store, "open", FRANKENSTEIN)
    ingest(store, "openlog", expand_sources([str(FIXTURES / "iplog" / "stable_1k.csv")]))


def _routes(data: Path) -> list[tuple[str, str]]:
    """(method, path template) of every route the app declares, HEAD for each GET."""
    settings = ServeSettings(data=str(data), token=TOKEN, closed=(CLOSED,))
    api = create_app(Engine(str(data)), settings).api
    out: list[tuple[str, str]] = []
    for route in api.routes:
        if isinstance(route, APIRoute):
            for m in sorted(route.methods):
                out.append((m, route.path))
                if m == "GET":
                    out.append(("HEAD", route.path))
        elif isinstance(route, Mount):
            out += [("GET", route.path + "/"), ("GET", route.path + "/app.js")]
        else:  # starlette's own docs routes (/openapi.json, /docs, /redoc)
            out += [(m, route.path) for m in sorted(getattr(route, "methods", ()) or ())]
    return out


def _fill(path: str, values: dict[str, str]) -> list[str]:
    names = re.findall(r"\{(\w+)(?::\w+)?\}", path)
    missing = [n for n in names if n not in values and n != "name"]
    assert not missing, f"the walk cannot fill {missing} in {path}: teach it"
    urls = []
    # Routes naming a dataset are walked with the closed one and with one under it.
    for name in ([CLOSED, f"{CLOSED}/sub"] if "name" in names else [None]):
        url = path
        for n in names:
            value = name if n == "name" else values[n]
            url = re.sub(r"\{" + n + r"(?::\w+)?\}", value or "", url)
        urls.append(url)
    return urls


def _state(url: str) -> Any:
    """What a walk must not change: every dataset's head, aliases and versions; shard states."""
    with httpx.Client(base_url=url, headers=AUTH) as c:
        names = sorted(d["name"] for d in c.get("/datasets").json())
        heads = {n: (c.get(f"/datasets/{n}").json(), c.get(f"/datasets/{n}/aliases").json(),
                     c.get(f"/datasets/{n}/versions").json()) for n in names}
        shards = [(s["id"], s["state"]) for s in c.get("/shards").json()["shards"]]
    return heads, shards


def _leaks(text: str) -> bool:
    return CLOSED in text or SECRET_IP in text


@pytest.mark.slow
def test_no_route_reveals_a_closed_dataset_or_changes_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make_data(data, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", "--data", str(data), "--port", str(port), "--token", TOKEN,
                      "--closed", CLOSED, "--default", CLOSED)
    with running(args, f"{url}/healthz"):
        with httpx.Client(base_url=url, headers=AUTH) as c:
            # Lay the closed datasets out, so their shards exist to be woken or slept.
            shard_ids = [s["id"] for d in (CLOSED, f"{CLOSED}/sub")
                         for s in c.get("/shards", params={"dataset": d}).json()["shards"]]
            head = c.get(f"/datasets/{CLOSED}/sub").json()["version"]
            # The detector works: with the token, the closed dataset shows up.
            assert _leaks(c.get("/metrics").text) and _leaks(c.get("/datasets").text)
        assert shard_ids
        engine = Engine(str(data))
        view = engine.records(f"{CLOSED}/sub", head)
        task = Task(f"{CLOSED}/sub", "HEAD", tuple(ch.position for ch in view.chunks),
                    DistinctQuery(Window(), 10))
        values = {"n": "1", "ips": f"[{SECRET_IP}]", "start": str(T0), "end": str(T0 + 10**6),
                  "alias": "prod", "shard": shard_ids[0], "path": f"{CLOSED}/lines/1/x"}
        bodies: dict[str, bytes] = {"/shards/map": wire.pack(task)}
        before = _state(url)
        seen = []
        with httpx.Client(base_url=url, timeout=10) as anon:
            for method, template in _routes(data):
                for path in _fill(template, values):
                    body = bodies.get(template, b"{}" if method in ("POST", "PUT") else None)
                    params = {"since": "0"} if path == "/events" else None
                    with anon.stream(method, path, content=body, params=params,
                                     headers={"content-type": "application/json"}) as r:
                        text = _read_for(r, 2.0)
                    seen.append((method, path, r.status_code))
                    assert r.status_code < 500, (method, path, r.status_code, text)
                    names_closed = CLOSED in path or path in ("/lines/{n}".replace("{n}", "1"),)
                    if names_closed or path.startswith(("/find/", "/lines/")) or (
                            path == "/shards/map") or re.search(r"/(wake|sleep)$", path):
                        # It reads (or changes) the closed dataset: refused, with nothing of it.
                        assert r.status_code in (401, 404, 405), (method, path, r.status_code)
                        assert SECRET_IP not in text, (method, path, text)
                    else:
                        assert not _leaks(text), (method, path, text[:300])
        # Non-ASCII credentials are a 401 too, never a 500 or a broken stream.
        for path in (f"/datasets/{CLOSED}/lines/1", "/datasets", "/shards", "/metrics",
                     "/events?limit=1&since=0"):
            with httpx.Client(base_url=url, timeout=5) as raw:
                r = raw.request("GET", path, headers={"authorization": b"Bearer \xff\xfe\x80"})
            assert r.status_code in (200, 401) and SECRET_IP not in r.text, (path, r.status_code)
            assert CLOSED in path or CLOSED not in r.text, path
        # Not ASCII, yet str.isdigit() calls it a digit: int() raised, a 500.
        r = httpx.get(f"{url}/events", headers={"last-event-id": b"\xb2"})
        assert r.status_code == 400 and r.json()["error"] == "bad request"
        r = httpx.put(f"{url}/datasets/x", content=b"1",
                      headers={"authorization": b"Bearer \xc3\xa9\xff"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert _state(url) == before
    assert {m for m, _, _ in seen} >= {"GET", "HEAD", "POST", "PUT", "DELETE"}


def _read_for(r: httpx.Response, seconds: float) -> str:
    """The body, or what of a stream (an event stream never ends) came within ``seconds``."""
    out = []
    deadline = time.monotonic() + seconds
    try:
        for chunk in r.iter_bytes():
            out.append(chunk)
            if time.monotonic() > deadline:
                break
    except httpx.ReadTimeout:
        pass
    return b"".join(out).decode("utf-8", "replace")
