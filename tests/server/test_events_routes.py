"""GET /events: Server-Sent Events from the journal, filtered, resumable."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

from quarry.datasets.kinds import put_bytes
from quarry.engine import Engine


def events(client: TestClient, **params: object) -> list[tuple[int, str, dict[str, object]]]:
    headers = {}
    if "last_event_id" in params:
        headers["last-event-id"] = str(params.pop("last_event_id"))
    r = client.get("/events", params=params, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in r.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                      and not line.startswith(":"))
        if "data" in fields:
            out.append((int(fields["id"]), fields["event"], orjson.loads(fields["data"])))
    return out


def test_stream_filter_and_resume(client: TestClient, engine: Engine) -> None:
    store = engine.store
    a1 = put_bytes(store, "qplan/raw", b"1")
    put_bytes(store, "other", b"x")
    a2 = put_bytes(store, "qplan/raw", b"2")
    store.set_alias("qplan/raw", "prod", a1.version)
    got = events(client, since=0, limit=4)
    assert [(e, d["dataset"]) for _, e, d in got] == [
        ("commit", "qplan/raw"), ("commit", "other"), ("commit", "qplan/raw"),
        ("alias", "qplan/raw")]
    assert got[2][2]["version"] == a2.version and got[2][2]["parent"] == a1.version
    only = events(client, since=0, limit=2, dataset="qplan/*", event="commit")
    assert [d["version"] for _, _, d in only] == [a1.version, a2.version]
    resumed = events(client, last_event_id=got[1][0], limit=2)
    assert [x[2] for x in resumed] == [got[2][2], got[3][2]]


def test_bad_input(client: TestClient) -> None:
    for params, headers in (({"limit": 0}, {}), ({"since": -1}, {}),
                            ({}, {"last-event-id": "abc"})):
        r = client.get("/events", params=params, headers=headers)
        assert r.status_code == 400 and r.json()["error"] == "bad request"
