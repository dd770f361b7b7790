from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from quarry.datasets.lines import put_lines
from quarry.engine import Engine
from quarry.server.app import create_app
from quarry.server.settings import ServeSettings
from quarry.store import Store
from tests.conftest import make_client
from tests.index.test_line_index import oracle_lines
from tests.support import FIXTURES

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"
EXPECTED = oracle_lines(FRANKENSTEIN.read_bytes())


@pytest.fixture
def served(engine: Engine, store: Store) -> TestClient:
    put_lines(store, "frank", FRANKENSTEIN)
    return make_client(engine, default_dataset="frank")


def test_line_reads(served: TestClient) -> None:
    r = served.get("/lines/2")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.content == EXPECTED[1]
    assert served.get("/datasets/frank/lines/1").content == EXPECTED[0]
    last = len(EXPECTED)
    assert served.get(f"/lines/{last}").content == EXPECTED[-1]
    r = served.get(f"/lines/{last + 1}")
    assert r.status_code == 413
    assert r.json()["error"] == "out of range"
    assert r.json()["lines"] == last


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.0", "99999999999999999999",
                                 "9223372036854775808", "%20"])
def test_malformed_line_numbers(served: TestClient, bad: str) -> None:
    r = served.get(f"/lines/{bad}")
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "bad request" and body["detail"]


def test_unknown_dataset_and_route(served: TestClient) -> None:
    r = served.get("/datasets/nope/lines/1")
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert served.get("/datasets/nope").status_code == 404
    r = served.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"] == "not found"
    assert served.post("/lines/1").status_code == 405


def test_range_read(served: TestClient) -> None:
    r = served.get("/datasets/frank/lines", params={"start": 3, "count": 5})
    assert r.status_code == 200
    assert r.content == b"".join(x + b"\n" for x in EXPECTED[2:7])
    assert r.headers["x-quarry-lines"] == "5"
    big = served.get("/datasets/frank/lines", params={"start": 1, "count": 100000})
    assert big.content == b"".join(x + b"\n" for x in EXPECTED)
    tail = served.get("/datasets/frank/lines", params={"start": len(EXPECTED), "count": 10})
    assert tail.content == EXPECTED[-1] + b"\n"
    for params in ({"start": 0}, {"start": "x"}, {"start": 1, "count": 0},
                   {"start": 1, "count": 10**9}, {"count": 5}):
        r = served.get("/datasets/frank/lines", params=params)
        assert r.status_code == 400, params
        assert "detail" in r.json()
    r = served.get("/datasets/frank/lines", params={"start": 10**6})
    assert r.status_code == 413


def test_metadata(served: TestClient) -> None:
    r = served.get("/datasets")
    assert [d["name"] for d in r.json()] == ["frank"]
    d = served.get("/datasets/frank").json()
    assert d["kind"] == "lines" and d["lines"] == len(EXPECTED)
    assert served.get("/healthz").json()["status"] == "ok"
    assert served.get("/openapi.json").status_code == 200


def test_zero_based(engine: Engine, store: Store) -> None:
    put_lines(store, "frank", FRANKENSTEIN)
    c = make_client(engine, default_dataset="frank", index_base=0)
    assert c.get("/lines/0").content == EXPECTED[0]
    assert c.get(f"/lines/{len(EXPECTED)}").status_code == 413


def test_no_default_dataset(client: TestClient) -> None:
    r = client.get("/lines/1")
    assert r.status_code == 404 and "default" in r.json()["detail"]


def test_versions_in_line_reads(served: TestClient, store: Store, tmp_path: Path) -> None:
    old = store.head("frank")
    f = tmp_path / "new.txt"
    f.write_bytes(b"new first line\n")
    put_lines(store, "frank", f)
    assert served.get("/lines/1").content == b"new first line"
    assert served.get("/lines/1", params={"version": old}).content == EXPECTED[0]
    assert served.get("/lines/1", params={"version": "zzzzzz"}).status_code == 404


def test_linked_file_changed_is_503(tmp_path: Path) -> None:
    f = tmp_path / "linked.txt"
    f.write_bytes(b"a\nb\n")
    store = Store(tmp_path / "d")
    put_lines(store, "l", f, link=True)
    engine = Engine(store)
    c = TestClient(create_app(engine, ServeSettings(data=str(store.root), default_dataset="l")))
    assert c.get("/lines/2").content == b"b"
    f.write_bytes(b"changed\n")
    r = c.get("/lines/2")
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    assert c.get("/datasets/l/lines", params={"start": 1}).status_code == 503


def test_hot_path_answers_like_the_app(served: TestClient, engine: Engine) -> None:
    """The protocol's shortcut must give byte-identical status and bodies to the ASGI route."""
    app = served.app
    hot = app.hot_routes  # type: ignore[attr-defined]
    last = len(EXPECTED)
    urls = ["/lines/1", "/lines/2", f"/lines/{last}", f"/lines/{last + 1}", "/lines/0",
            "/lines/-3", "/lines/x", "/lines/99999999999999999999", "/datasets/frank/lines/7",
            "/datasets/nope/lines/1", "/datasets/bad name/lines/1", "/lines/1?version=x",
            "/lines/2?version=HEAD", "/datasets/frank/lines/2?version="]
    for url in urls:
        raw = hot.respond(b"GET", url.encode())
        assert raw is not None, url
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        r = served.get(url)
        assert (status, body) == (r.status_code, r.content), url
    for url in ["/lines/1?start=x", "/datasets", "/healthz", "/datasets/frank/lines"]:
        assert hot.respond(b"GET", url.encode()) is None
    assert hot.respond(b"POST", b"/lines/1") is None


@pytest.mark.parametrize("base", [0, 1])
def test_hot_path_numbers_like_the_app(engine: Engine, store: Store, base: int) -> None:
    """Line numbers as the hot path reads them (leading zeros, the 2^63 edge, the base)."""
    put_lines(store, "frank", FRANKENSTEIN)
    c = make_client(engine, default_dataset="frank", index_base=base)
    hot = c.app.hot_routes  # type: ignore[attr-defined]
    last = len(EXPECTED)
    for raw in ["0", "1", "007", "00", str(last - 1), str(last), str(last + 1),
                "9" * 18, "9" * 19, "9223372036854775807", "9223372036854775808", "1e3",
                "+5", "-0", "5.0"]:
        for url in (f"/lines/{raw}", f"/datasets/frank/lines/{raw}"):
            got = hot.respond(b"GET", url.encode())
            if got is None:
                continue  # not the hot path's to answer (e.g. not ASCII)
            head, _, body = got.partition(b"\r\n\r\n")
            r = c.get(url)
            assert (int(head.split(b" ")[1]), body) == (r.status_code, r.content), (base, url)
