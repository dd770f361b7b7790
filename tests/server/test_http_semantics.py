"""HTTP itself: HEAD, 405 with Allow, no-route answers (hot path and ASGI alike), OpenAPI."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from quarry.datasets.lines import put_lines
from quarry.engine import Engine
from quarry.store import Store
from tests.conftest import make_client
from tests.index.test_line_index import oracle_lines
from tests.support import FIXTURES, free_port, quarry_cmd, running

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"
EXPECTED = oracle_lines(FRANKENSTEIN.read_bytes())
LINE_ROUTES = ("/lines/{n}", "/datasets/{name}/lines/{n}", "/datasets/{name}/lines")


@pytest.fixture
def served(engine: Engine, store: Store) -> TestClient:
    put_lines(store, "frank", FRANKENSTEIN)
    return make_client(engine, default_dataset="frank")


def _headers(r: httpx.Response) -> dict[str, str]:
    # x-request-id is new for every request.
    return {k: v for k, v in r.headers.items() if k != "x-request-id"}


@pytest.mark.parametrize("url", [
    "/lines/1", "/lines/2", f"/lines/{len(EXPECTED) + 1}", "/lines/x", "/lines/0",
    "/datasets/frank/lines/3", "/datasets/nope/lines/1", "/datasets/frank/lines?start=1&count=5",
    "/datasets/frank/lines?start=0", "/datasets", "/datasets/frank", "/datasets/frank/data",
    "/nowhere", "/lines/1/extra", "/openapi.json",
])
def test_head_answers_like_get_without_a_body(served: TestClient, url: str) -> None:
    get = served.get(url)
    head = served.head(url)
    assert head.status_code == get.status_code, url
    assert head.content == b""
    assert _headers(head) == _headers(get), url
    if "content-length" in get.headers:  # streamed answers (range reads) have none
        assert int(head.headers["content-length"]) == len(get.content)


def test_the_hot_path_leaves_head_to_the_app(served: TestClient) -> None:
    hot = served.app.hot_routes  # type: ignore[attr-defined]
    assert hot.respond(b"GET", b"/lines/1") is not None
    assert hot.respond(b"HEAD", b"/lines/1") is None
    assert hot.respond(b"HEAD", b"/datasets/frank/lines/1") is None


def test_405_names_the_allowed_methods(served: TestClient) -> None:
    r = served.post("/lines/1")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert r.json() == {"error": "method not allowed", "detail": "Method Not Allowed"}
    assert served.put("/lines/1").headers["allow"] == "GET, HEAD"
    # One path served by several routes: every one's methods, not only the first's.
    allow = served.delete("/datasets/frank/find/member").headers["allow"].split(", ")
    assert {"GET", "HEAD", "POST"} <= set(allow)
    r = served.patch("/shards/map")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    # Below a dataset, the catch-alls (GET and PUT /datasets/{name}) take no part: a write
    # to a read-only route is its 405, and Allow lists only the methods of that route.
    for method in ("PUT", "POST", "DELETE"):
        for path in ("/datasets/frank/lines/3", "/datasets/frank/data",
                     "/datasets/frank/versions", "/datasets/frank/lines?start=1"):
            r = served.request(method, path)
            assert r.status_code == 405, (method, path)
            assert r.headers["allow"] == "GET, HEAD", (method, path)
    r = served.put("/datasets/frank/find")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    for path in ("/datasets/frank/query", "/datasets/frank/keys/build", "/datasets/frank/stats"):
        r = served.get(path)
        assert r.status_code == 405 and r.headers["allow"] == "POST", path
    assert served.options("/datasets/frank/aliases/prod").headers["allow"] == "DELETE, PUT"
    assert served.post("/datasets/frank").headers["allow"] == "DELETE, GET, HEAD, PUT"
    # The hot path leaves such PUTs to the app too.
    hot = served.app.hot_routes  # type: ignore[attr-defined]
    assert not hot.takes_put(b"/datasets/frank/lines/3", [(b"content-length", b"1")])
    # A mounted app's own 405 keeps its Allow.
    assert served.post("/console/index.html").headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("url", [
    "/lines/1/extra", "/lines/", "/lines//1", "/datasets/frank/lines/1/",
    "/datasets/frank/lines/1/x", "/datasets/frank/lines/", "/datasets/frank/lines/?start=1",
    "/datasets/frank/lines//1",
])
def test_no_route_is_a_404_on_both_paths(served: TestClient, url: str) -> None:
    """An empty or multi-segment line number is no route, not a malformed number: the hot
    path declines it and the app answers 404, whichever path a request takes."""
    hot = served.app.hot_routes  # type: ignore[attr-defined]
    assert hot.respond(b"GET", url.encode()) is None, url
    r = served.get(url)
    assert r.status_code == 404, url
    assert r.json() == {"error": "not found", "detail": f"no route for {url.split('?')[0]}"}


def test_trailing_slash_after_the_number_redirects(served: TestClient) -> None:
    # Starlette's redirect to the route without the slash, for the hot path's requests too.
    hot = served.app.hot_routes  # type: ignore[attr-defined]
    assert hot.respond(b"GET", b"/lines/1/") is None
    r = served.get("/lines/1/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith("/lines/1")


def _json_error_schema(schema: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    ref = response["content"]["application/json"]["schema"]["$ref"]
    assert ref.startswith("#/components/schemas/")
    return dict(schema["components"]["schemas"][ref.rsplit("/", 1)[1]])


def test_openapi_declares_the_line_routes_real_answers(served: TestClient) -> None:
    schema = served.get("/openapi.json").json()
    for path in LINE_ROUTES:
        responses = schema["paths"][path]["get"]["responses"]
        expected = {"200", "400", "401", "404", "409", "413", "503"}
        # A single line answers If-None-Match; a range read does not.
        conditional = path != "/datasets/{name}/lines"
        assert set(responses) == expected | ({"304"} if conditional else set()), path
        assert set(responses["200"]["content"]) == {"text/plain"}
        if conditional:
            assert {"etag", "cache-control"} <= set(responses["200"]["headers"]), path
        for status in expected - {"200"}:
            body = _json_error_schema(schema, responses[status])
            assert body["type"] == "object", (path, status)
            assert set(body["required"]) == {"error", "detail"}
            assert body["properties"]["error"]["type"] == "string"
            assert body["properties"]["detail"]["type"] == "string"
            assert responses[status]["description"]
    assert set(schema["paths"]["/datasets/{name}/lines"]["get"]["responses"]["200"]["headers"]
               ) == {"x-quarry-version", "x-quarry-lines"}


def test_openapi_has_no_422(served: TestClient) -> None:
    """Invalid parameters get 400 with the JSON error body (the validation handler), so no
    operation may promise FastAPI's 422."""
    schema = served.get("/openapi.json").json()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            assert "422" not in op["responses"], (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    # What the description says is what the server does.
    r = served.get("/datasets/frank/lines", params={"start": 1, "count": "many"})
    assert r.status_code == 400 and set(r.json()) == {"error", "detail"}
    assert "400" in schema["paths"]["/datasets/{name}/find/ips"]["get"]["responses"]


def _read_until(s: socket.socket, done: bytes, count: int) -> bytes:
    buf = b""
    while buf.count(done) < count:
        chunk = s.recv(65536)
        assert chunk, f"the server closed the connection after {buf!r}"
        buf += chunk
    return buf


@pytest.mark.slow
def test_head_and_no_route_over_sockets(tmp_path: Path) -> None:
    """The real server: HEAD sends headers only (streamed or not), the connection stays in
    step for the next request, and the hot path's no-route URLs are 404s."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", str(FRANKENSTEIN), "--data", str(tmp_path / "d"),
                      "--port", str(port), "--workers", "1")
    with running(args, f"{url}/healthz"):
        with httpx.Client(base_url=url, timeout=10) as c:
            for path in ("/lines/1", "/datasets/frankenstein/lines?start=1&count=5",
                         "/lines/999999", "/datasets/frankenstein/lines?start=1&count=100000"):
                get, head = c.get(path), c.head(path)
                assert head.status_code == get.status_code, path
                assert head.content == b""
                assert head.headers.get("content-length") == get.headers.get("content-length")
                assert head.headers.get("x-quarry-lines") == get.headers.get("x-quarry-lines")
            r = c.post("/lines/1")
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
            # A request the HTTP parser refuses (its URL is past the parser's limit) is
            # still answered with the JSON error body.
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /lines/%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"1" * 200_000))
                answer = _read_until(s, b"\r\n\r\n", 1)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
            assert b"content-type: application/json" in answer.lower()
            for path in ("/lines/1/extra", "/datasets/frankenstein/lines/1/",
                         "/datasets/frankenstein/lines/"):
                r = c.get(path)
                assert r.status_code == 404 and r.json()["error"] == "not found", path
        # On one connection: no body bytes follow a HEAD's headers, so the GET after it is
        # read cleanly (its status line comes right after the HEAD's blank line).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            # The event stream never ends and /data reads a whole file: a HEAD of either
            # must end with its headers, or the GET behind it would wait forever.
            for path in (b"/lines/2", b"/datasets/frankenstein/lines?start=1&count=5",
                         b"/events", b"/datasets/frankenstein/data"):
                s.sendall(b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /lines/3 HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                buf = _read_until(s, b"\r\n\r\n", 2)
                head, _, rest = buf.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                assert rest.startswith(b"HTTP/1.1 200"), rest
                get_head, _, body = rest.partition(b"\r\n\r\n")
                length = int(get_head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += s.recv(65536)
                assert body == EXPECTED[2]
