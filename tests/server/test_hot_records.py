"""The hot path answers /find/... exactly as the ASGI routes do."""

import csv

from fastapi.testclient import TestClient

from quarry.access import AccessPolicy
from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.server.hotpath import HotRoutes
from tests.conftest import make_client
from tests.support import FIXTURES

CSV = FIXTURES / "iplog" / "stable_1k.csv"


def body(raw: bytes) -> tuple[int, bytes]:
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


def test_hot_and_asgi_agree(engine: Engine) -> None:
    ingest(engine.store, "iplog", expand_sources([str(CSV)]))
    rows = list(csv.reader(CSV.read_text().splitlines()))
    ips = ",".join(r[0] for r in rows[:30:3])
    start, end = rows[0][1], rows[20][1]
    hot = HotRoutes(engine, None, 1, AccessPolicy(None, "127.0.0.1"))
    client: TestClient = make_client(engine)
    for url in [f"/find/[{ips}]/{start}/{end}/", f"/datasets/iplog/find/[{ips}]/{start}/{end}",
                f"/datasets/iplog/find/member/[{ips},9.9.9.9]/{start}/{end}/",
                f"/find/[{ips}]/{end}/{start}/", "/find/[1.2.3]/1/2/",
                "/datasets/nope/find/[1.1.1.1]/1/2/"]:
        raw = hot.respond(b"GET", url.encode())
        assert raw is not None, url
        status, payload = body(raw)
        want = client.get(url)
        assert status == want.status_code, url
        assert payload == want.content, url
    assert hot.respond(b"GET", b"/find/[1.1.1.1]/1/2/?x=1") is None
    assert hot.respond(b"GET", b"/datasets/iplog/find/visits") is None
