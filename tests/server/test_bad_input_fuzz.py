"""Bad input is a 4xx with a JSON error, never a 500: every JSON-body route gets random values
of wrong types for its fields, every GET route random query parameters (huge, negative, NaN,
non-ASCII). Routes and fields come from the OpenAPI description, so new ones are fuzzed too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.datasets.records_ingest import ingest
from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.server.app import create_app
from quarry.server.settings import ServeSettings
from tests.support import FIXTURES

# Long-lived streams, and writes that change what the other examples see.
SKIP = {"/events", "/datasets/{name}/keys/build", "/shards/{shard}/wake",
        "/shards/{shard}/sleep", "/datasets/{name}/aliases"}
CSV = "id,city,ts\n" + "".join(f"{i},{['Oslo', 'Lima'][i % 2]},2024-01-0{1 + i % 9}T00:00:00Z\n"
                               for i in range(50))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("fuzz")
    engine = Engine(root / "data")
    ingest(engine.store, "logs", expand_sources([str(FIXTURES / "iplog" / "stable_1k.csv")]),
           chunk_rows=400)
    (root / "t.csv").write_text(CSV)
    ingest_table(engine.store, "people", [root / "t.csv"], sort_key="id")
    s = ServeSettings(data=str(engine.store.root), key_interval=0)
    with TestClient(create_app(engine, s), raise_server_exceptions=False) as c:
        yield c


def _routes(c: TestClient) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """(GET path, query parameter names) and (POST path, JSON body fields) of the API."""
    spec = c.app.api.openapi()  # type: ignore[attr-defined]
    gets, posts = [], []
    for path, ops in spec["paths"].items():
        path = path.replace("{name:path}", "{name}").replace("{shard:path}", "{shard}")
        if path in SKIP or "{ips}" in path:
            continue
        if "get" in ops:
            gets.append((path, [p["name"] for p in ops["get"].get("parameters", ())
                                if p["in"] == "query"]))
        body = ops.get("post", {}).get("requestBody", {}).get("content", {})
        schema = body.get("application/json", {}).get("schema", {})
        if "properties" in schema or path.endswith(("/join", "/query", "/explain", "/keys")):
            posts.append((path, list(schema.get("properties", {})) or ["where", "fields"]))
    return gets, posts


_SCALAR = (st.none() | st.booleans() | st.integers(-2**80, 2**80) | st.floats()
           | st.text(max_size=6) | st.sampled_from(["", "1.1.1.1", "é", "\x00", "nan", "-1",
                                                     "1e400", "99999999999999999999"]))
_JSON = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
_QUERY = st.one_of(st.integers(-2**80, 2**80).map(str), st.floats().map(str),
                   st.sampled_from(["nan", "inf", "-0", "é", "１２", "\u0663", "", "[]",
                                    "1.1.1.1", "::1", "2024-01-01T00:00:00Z", "-1"]),
                   st.text(max_size=6))


def _path(template: str, data: st.DataObject) -> str:
    return (template.replace("{name}", data.draw(st.sampled_from(["logs", "people"])))
            .replace("{n}", quote(data.draw(_QUERY), safe=""))
            .replace("{shard}", "logs@x/0"))


def _check(r: Any, what: str) -> None:
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        body = r.json()
        assert {"error", "detail"} <= set(body), f"{what}: {body}"


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_json_bodies_of_wrong_types_are_4xx(client: TestClient, data: st.DataObject) -> None:
    path, fields = data.draw(st.sampled_from(_routes(client)[1]), label="route")
    body = data.draw(st.dictionaries(st.sampled_from([*fields, "ips", "ip", "where"]), _JSON,
                                     max_size=4), label="body")
    try:
        r = client.post(_path(path, data), json=body)
    except ValueError:  # NaN/inf: not JSON the client library will send
        return
    _check(r, f"POST {path} {body!r}")


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_query_parameters_of_any_value_are_4xx(client: TestClient,
                                               data: st.DataObject) -> None:
    path, names = data.draw(st.sampled_from(_routes(client)[0]), label="route")
    params = data.draw(st.dictionaries(st.sampled_from([*names, "ip"] if names else ["x"]),
                                       _QUERY, max_size=4), label="params")
    _check(client.get(_path(path, data), params=params), f"GET {path} {params!r}")
