"""The hot path and its ASGI twin give the same answers: status, body and headers (but the
per-request ones, Date and x-request-id, whose presence is checked instead), for random line
numbers, versions, conditional requests and paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.datasets.lines import put_lines
from quarry.engine import Engine
from quarry.store import Store
from tests.conftest import make_client
from tests.index.test_line_index import oracle_lines
from tests.support import FIXTURES

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"
LINES = len(oracle_lines(FRANKENSTEIN.read_bytes()))
PER_REQUEST = {"date", "x-request-id"}


class Served:
    def __init__(self, root: Path) -> None:
        store = Store(root)
        engine = Engine(store, refresh_interval=0.0)
        old = put_lines(store, "frank", FRANKENSTEIN).version
        self.client = make_client(engine, default_dataset="frank")
        self.hot = self.client.app.hot_routes  # type: ignore[attr-defined]
        c = self.client
        head = c.put("/datasets/frank", content=b"one\ntwo\nthree\n", params={"kind": "lines"})
        new = head.json()["version"]
        assert c.put("/datasets/frank/aliases/prod", params={"version": old}).status_code == 200
        doc_old = c.put("/datasets/doc", content=b'{"a": 1}',
                        headers={"content-type": "application/json"}).json()["version"]
        doc_new = c.put("/datasets/doc", content=b"plain text",
                        headers={"content-type": "text/plain"}).json()["version"]
        self.versions = [old, new, doc_old, doc_new]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    return Served(tmp_path_factory.mktemp("equivalence") / "data")


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        name = k.strip().lower().decode("latin-1")
        assert name not in headers, f"{name} twice in {raw[:300]!r}"
        headers[name] = v.strip().decode("latin-1")
    return int(lines[0].split()[1]), headers, body


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(0, LINES + 3).map(str),
        st.integers(0, 40).map(lambda n: f"00{n}"),
        st.sampled_from(["-1", "x", "1.0", "+5", "9" * 19, "9223372036854775807",
                         "9223372036854775808", "99999999999999999999", "1e3"]))


@st.composite
def requests(draw: st.DrawFn, versions: list[str]) -> tuple[str, dict[str, str]]:
    version = draw(st.one_of(
        st.none(), st.sampled_from(["", "HEAD", "prod", "nope", "abc", "zz top"]),
        st.sampled_from(versions),
        st.sampled_from(versions).map(lambda v: v[:8]),
        st.sampled_from(versions).map(str.upper)))
    kind = draw(st.sampled_from(["default", "named", "data"]))
    name = draw(st.sampled_from(["frank", "doc", "nope", "a/b", "-bad"]))
    if kind == "default":
        path = f"/lines/{draw(_number())}"
    elif kind == "named":
        path = f"/datasets/{name}/lines/{draw(_number())}"
    else:
        path = f"/datasets/{name}/data"
    if version is not None:
        path += f"?version={version}"
    headers = {}
    if draw(st.booleans()):
        headers["x-request-id"] = draw(st.text("abcdef0123456789-", min_size=1, max_size=80))
    tag = draw(st.one_of(st.none(), st.sampled_from(versions),
                         st.sampled_from(["*", "nope"])))
    if tag is not None:
        form = draw(st.sampled_from(['"{}"', 'W/"{}"', '"x", "{}"', "{}"]))
        headers["if-none-match"] = form.format(tag) if tag != "*" else "*"
    return path, headers


def test_hot_and_asgi_answers_are_the_same(served: Served) -> None:
    answered = {"hot": 0}

    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(requests(served.versions))
    def check(request: tuple[str, dict[str, str]]) -> None:
        path, headers = request
        raw = served.hot.respond(
            b"GET", path.encode(), headers.get("x-request-id", "").encode() or None,
            headers["if-none-match"].encode() if "if-none-match" in headers else None)
        if raw is None:
            return  # declined: the ASGI route answers it, and no twin to compare
        answered["hot"] += 1
        status, hot_headers, body = _parse(raw)
        r = served.client.get(path, headers=headers)
        assert (status, body) == (r.status_code, r.content), path
        asgi_headers = dict(r.headers)
        # The TestClient has no server to add a Date: uvicorn adds it to ASGI answers.
        assert "date" in hot_headers
        assert hot_headers["x-request-id"] == asgi_headers["x-request-id"] \
            if "x-request-id" in headers else len(hot_headers["x-request-id"]) == 16
        assert ({k: v for k, v in hot_headers.items() if k not in PER_REQUEST}
                == {k: v for k, v in asgi_headers.items() if k not in PER_REQUEST}), path

    check()
    assert answered["hot"] > 200  # the hot path took most of them


def test_conditional_gets(served: Served) -> None:
    """The cases the property test draws at random, spelled out."""
    c = served.client
    old, new, _, doc_new = served.versions
    r = c.get(f"/datasets/frank/lines/2?version={old}")
    assert r.headers["etag"] == f'"{old}"'
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    for url in ("/lines/2", "/lines/2?version=HEAD", "/lines/2?version=prod",
                f"/lines/2?version={old[:10]}"):
        r = c.get(url)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-cache", url
    assert c.get("/lines/2").headers["etag"] == f'"{new}"'
    assert c.get("/lines/2?version=prod").headers["etag"] == f'"{old}"'
    for inm in (f'"{new}"', f'W/"{new}"', f'"x", "{new}"', "*"):
        r = c.get("/lines/2", headers={"if-none-match": inm})
        assert r.status_code == 304 and r.content == b"", inm
        assert r.headers["etag"] == f'"{new}"' and "content-type" not in r.headers
    assert c.get("/lines/2", headers={"if-none-match": f'"{old}"'}).status_code == 200
    r = c.get(f"/datasets/doc/data?version={doc_new}", headers={"if-none-match": f'"{doc_new}"'})
    assert r.status_code == 304
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    # Errors carry no validators.
    r = c.get("/lines/999999", headers={"if-none-match": "*"})
    assert r.status_code == 413 and "etag" not in r.headers
    # Through the hot path too.
    raw = served.hot.respond(b"GET", f"/datasets/doc/data?version={doc_new}".encode(), None,
                             f'"{doc_new}"'.encode())
    assert raw.startswith(b"HTTP/1.1 304 Not Modified\r\n") and raw.endswith(b"\r\n\r\n")
    assert b"content-length" not in raw
