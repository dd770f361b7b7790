"""PUT / GET / history / aliases over HTTP, with the in-process ASGI client."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from quarry.engine import Engine
from quarry.store import Part, Snapshot, Store
from tests.conftest import make_client


def put(client: TestClient, name: str, body: bytes, **params: str) -> dict[str, object]:
    r = client.put(f"/datasets/{name}", content=body, params=params)
    assert r.status_code in (200, 201), r.text
    out: dict[str, object] = r.json()
    return out


def test_put_get_document_versions(client: TestClient) -> None:
    r = client.put("/datasets/qplan/raw", content=b"v1 data", params={"message": "first"},
                   headers={"content-type": "application/x-thing"})
    assert r.status_code == 201
    v1 = r.json()
    assert v1["created"] and v1["kind"] == "document" and v1["parent"] is None
    assert r.headers["etag"] == f'"{v1["version"]}"'
    v2 = put(client, "qplan/raw", b"v2 data", message="second")
    assert v2["parent"] == v1["version"]

    r = client.get("/datasets/qplan/raw/data")
    assert r.content == b"v2 data" and r.headers["x-quarry-version"] == v2["version"]
    r = client.get("/datasets/qplan/raw/data", params={"version": v1["version"]})
    assert r.content == b"v1 data"
    assert r.headers["content-type"] == "application/x-thing"
    r = client.get("/datasets/qplan/raw/data", params={"version": str(v1["version"])[:5]})
    assert r.content == b"v1 data"

    hist = client.get("/datasets/qplan/raw/versions").json()
    assert hist["head"] == v2["version"]
    assert [v["version"] for v in hist["versions"]] == [v2["version"], v1["version"]]
    first = hist["versions"][1]
    assert first["message"] == "first" and first["size"] == 7 and first["parent"] is None
    assert first["time"].endswith("Z") and first["lineage"] == []


def test_unchanged_put_says_so(client: TestClient) -> None:
    v1 = put(client, "a", b"same")
    r = client.put("/datasets/a", content=b"same")
    assert r.status_code == 200
    body = r.json()
    assert body["created"] is False and body["status"] == "unchanged"
    assert body["version"] == v1["version"] and "no new version" in body["detail"]
    assert len(client.get("/datasets/a/versions").json()["versions"]) == 1


def test_lines_kind_and_kind_rules(client: TestClient) -> None:
    v = put(client, "text", b"one\ntwo\nthree\n", kind="lines")
    assert v["kind"] == "lines"
    assert client.get("/datasets/text/lines/2").text == "two"
    put(client, "text", b"uno\ndos\n")  # keeps its kind
    assert client.get("/datasets/text/lines/1").text == "uno"
    assert client.get("/datasets/text/data").text == "uno\ndos\n"
    r = client.put("/datasets/text", content=b"x", params={"kind": "document"})
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    r = client.put("/datasets/new", content=b"x", params={"kind": "records"})
    assert r.status_code == 400 and "records" in r.json()["detail"]
    r = client.put("/datasets/new", content=b"x", params={"kind": "spreadsheet"})
    assert r.status_code == 400 and "unknown dataset kind" in r.json()["detail"]
    r = client.put("/datasets/new", content=b"x", params={"kind": "lines", "index": "bogus"})
    assert r.status_code == 400
    assert client.get("/datasets/new/data").status_code == 404  # nothing was made


def test_aliases(client: TestClient) -> None:
    v1 = put(client, "d", b"1")
    v2 = put(client, "d", b"2")
    r = client.put("/datasets/d/aliases/prod", json={"version": str(v1["version"])[:7]})
    assert r.status_code == 200 and r.json()["version"] == v1["version"]
    assert client.get("/datasets/d/data", params={"version": "prod"}).content == b"1"
    r = client.put("/datasets/d/aliases/prod")  # no body: HEAD
    assert r.json()["version"] == v2["version"] and r.json()["previous"] == v1["version"]
    assert client.get("/datasets/d/data", params={"version": "prod"}).content == b"2"
    assert client.get("/datasets/d/aliases").json() == {"prod": v2["version"]}
    hist = client.get("/datasets/d/versions").json()
    assert hist["versions"][0]["aliases"] == ["prod"]
    assert client.delete("/datasets/d/aliases/prod").status_code == 200
    assert client.get("/datasets/d/data", params={"version": "prod"}).status_code == 404
    assert client.delete("/datasets/d/aliases/prod").status_code == 404


@pytest.mark.parametrize(("method", "url", "kw", "status"), [
    ("GET", "/datasets/nope/data", {}, 404),
    ("GET", "/datasets/nope/versions", {}, 404),
    ("GET", "/datasets/d/data?version=abcdef0123", {}, 404),
    ("GET", "/datasets/d/data?version=abc", {}, 400),
    ("GET", "/datasets/d/data?version=no-such-alias", {}, 404),
    ("GET", "/datasets/d/versions?limit=0", {}, 400),
    ("PUT", "/datasets/d/aliases/HEAD", {}, 400),
    ("PUT", "/datasets/d/aliases/1bad", {}, 400),
    ("PUT", "/datasets/d/aliases/ok", {"content": b"not json"}, 400),
    ("PUT", "/datasets/d/aliases/ok", {"json": {"version": 5}}, 400),
    ("PUT", "/datasets/d/aliases/ok", {"json": {"version": "ffffffffff"}}, 404),
    ("PUT", "/datasets/nope/aliases/ok", {}, 404),
    ("PUT", "/datasets/bad name", {"content": b"x"}, 400),
    ("PUT", "/datasets/a/..%2Fb", {"content": b"x"}, 400),
    ("PUT", "/datasets/-dash", {"content": b"x"}, 400),
    ("PUT", "/datasets/x/versions/y", {"content": b"x"}, 404),  # no route: not a name
    ("PUT", "/datasets/d", {"content": b"x", "headers": {"content-length": "zz"}}, 400),
    ("PUT", "/datasets/d", {"content": b"x", "params": {"message": "m" * 5000}}, 400),
    ("PUT", "/datasets/l", {"content": b"a\nb\n", "params": {"kind": "lines",
                                                             "index": "bogus"}}, 400),
    ("PUT", "/datasets/d", {"content": b"x", "params": {"kind": "lines"}}, 409),
])
def test_bad_input(client: TestClient, method: str, url: str, kw: dict[str, object],
                   status: int) -> None:
    put(client, "d", b"keep me")
    before = client.get("/datasets/d/versions").json()
    r = client.request(method, url, **kw)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert set(r.json()) >= {"error", "detail"}
    assert client.get("/datasets/d/versions").json() == before
    assert client.get("/datasets/d/data").content == b"keep me"


def colliding_versions(store: Store, name: str) -> tuple[str, str]:
    """Two stored versions of ``name`` whose ids share their first 5 hex digits (by the
    birthday paradox, ~1,200 candidate manifests), reachable through aliases."""
    blob = store.blobs.put_bytes(b"")
    seen: dict[str, Snapshot] = {}
    i = 0
    while True:
        s = Snapshot(dataset=name, kind="document", parent=None, created=float(i), size=0,
                     sha256=blob, parts=(Part("data", blob, 0),), message=str(i))
        prefix = s.id[:5]
        if prefix in seen:
            a, b = seen[prefix], s
            break
        seen[prefix] = s
        i += 1
    out = []
    for alias, snap in (("one", a), ("two", b)):
        version = store.save_snapshot(snap)
        store.refs.set_locked(name, alias, version)
        out.append(version)
    return out[0], out[1]


def test_ambiguous_prefix_is_409(client: TestClient, store: Store) -> None:
    put(client, "amb", b"head")
    a, b = colliding_versions(store, "amb")
    common = 5
    while a[common] == b[common]:
        common += 1
    r = client.get("/datasets/amb/data", params={"version": a[:common]})
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    assert a in r.json()["matches"] and b in r.json()["matches"]
    assert client.get("/datasets/amb/data", params={"version": a[: common + 1]}).status_code == 200


def test_names_resolve_anew_when_aliases_move(store: Store) -> None:
    """Resolved names are cached (for as long as HEAD is), but never past an alias move."""
    with make_client(Engine(store, refresh_interval=60.0)) as client:
        v1 = put(client, "d", b"1")
        put(client, "d", b"2")
        client.put("/datasets/d/aliases/prod", json={"version": v1["version"]})
        assert client.get("/datasets/d/data", params={"version": "prod"}).content == b"1"
        client.put("/datasets/d/aliases/prod")  # to HEAD
        assert client.get("/datasets/d/data", params={"version": "prod"}).content == b"2"

        put(client, "amb", b"head")
        a, b = colliding_versions(store, "amb")
        store.delete_alias("amb", "two")
        common = 5
        while a[common] == b[common]:
            common += 1
        prefix = {"version": a[:common]}
        assert client.get("/datasets/amb/data", params=prefix).status_code == 200
        store.set_alias("amb", "two", b)  # now two versions start with the prefix
        assert client.get("/datasets/amb/data", params=prefix).status_code == 409


def test_if_match(client: TestClient) -> None:
    v1 = put(client, "cc", b"1")
    r = client.put("/datasets/cc", content=b"2", headers={"if-match": f'"{v1["version"]}"'})
    assert r.status_code == 201
    v2 = r.json()
    r = client.put("/datasets/cc", content=b"3", headers={"if-match": str(v1["version"])})
    assert r.status_code == 412 and r.json()["current"] == v2["version"]
    r = client.put("/datasets/cc", content=b"3", headers={"if-match": "ffffffffff"})
    assert r.status_code == 412
    r = client.put("/datasets/fresh", content=b"3", headers={"if-match": "*"})
    assert r.status_code == 412
    r = client.put("/datasets/cc", content=b"3", headers={"if-match": "*"})
    assert r.status_code == 201
    assert client.get("/datasets/cc/data").content == b"3"


def test_concurrent_http_writers_lose_nothing(engine: Engine) -> None:
    # Apps are built up front: building them in threads races inside pydantic.
    clients = [make_client(engine) for _ in range(4)]
    codes: list[int] = []

    def writer(k: int) -> None:
        for i in range(8):
            codes.append(clients[k].put("/datasets/shared", content=b"%d-%d" % (k, i))
                         .status_code)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert codes == [201] * 32
    assert len(engine.store.history("shared")) == 32


def test_free_space_refusal_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "d", min_free_bytes=1 << 62)
    with make_client(Engine(store, refresh_interval=0)) as c:
        r = c.put("/datasets/x", content=b"data")
        assert r.status_code == 507 and r.json()["error"] == "insufficient storage"
        r = c.put("/datasets/y", content=b"a\nb\n", params={"kind": "lines"})
        assert r.status_code == 507
    assert list(store.blobs.ids()) == [] and list(store.tmp_dir.iterdir()) == []
    assert store.datasets() == []


def test_hot_path_serves_data_like_the_app(client: TestClient) -> None:
    hot = client.app.hot_routes  # type: ignore[attr-defined]
    v1 = str(put(client, "hot/doc", b"first", kind="document")["version"])
    put(client, "hot/doc", b"second")
    put(client, "hot/text", b"a\nb\n", kind="lines")
    client.put("/datasets/hot/csv", content=b"x,y\n", headers={"content-type": "text/csv"})
    urls = ["/datasets/hot/doc/data", f"/datasets/hot/doc/data?version={v1}",
            f"/datasets/hot/doc/data?version={v1[:6]}", "/datasets/hot/doc/data?version=abc",
            "/datasets/hot/doc/data?version=nosuch", "/datasets/hot/text/data",
            "/datasets/hot/csv/data", "/datasets/nope/data", "/datasets/bad name/data",
            "/datasets/hot/doc/data?version="]
    for url in urls:
        raw = hot.respond(b"GET", url.encode())
        assert raw is not None, url
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(x.decode().lower().split(": ", 1) for x in lines[1:])
        r = client.get(url)
        assert (int(lines[0].split(b" ")[1]), body) == (r.status_code, r.content), url
        for h in ("content-type", "etag", "x-quarry-version"):
            assert headers.get(h) == r.headers.get(h), (url, h)
    for url in ["/datasets/hot/doc/data?version=a&x=1", "/datasets/hot/doc/data?v=1",
                "/datasets/hot/doc/data?version=a%20b"]:
        assert hot.respond(b"GET", url.encode()) is None


def test_big_bodies_are_written_in_a_worker_thread(client: TestClient,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from quarry.server.routes import versions

    monkeypatch.setattr(versions, "HANDOFF", 1000)
    body = b"".join(b"line %d\n" % i for i in range(5000))
    r = client.put("/datasets/big", content=iter([body[i : i + 777]
                                                   for i in range(0, len(body), 777)]),
                   params={"kind": "lines"})
    assert r.status_code == 201 and r.json()["size"] == len(body)
    assert client.get("/datasets/big/data").content == body
    assert client.get("/datasets/big/lines/4321").text == "line 4320"
