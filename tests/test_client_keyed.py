"""The Python client's keyed-query methods against a real server process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quarry import Client
from quarry.errors import BadRequest
from tests.support import free_port, quarry_cmd, running

pytestmark = pytest.mark.slow


def test_keyed_client(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    f = tmp_path / "t.csv"
    f.write_text("id,kind,n\n" + "".join(f"{i},k{i % 3},{i % 10}\n" for i in range(300)))
    subprocess.run(quarry_cmd("ingest", "table", "t", str(f), "--key", "kind,n", "--chunk-rows",
                              "100", "--data", data), check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = quarry_cmd("serve", "--data", data, "--port", str(port), "--log-level", "warning")
    with running(serve, f"{url}/healthz"), \
            Client(url) as q:
        where = {"kind": "k1", "n": {"lt": 5}}
        want = [i for i in range(300) if i % 3 == 1 and i % 10 < 5]
        assert [r["id"] for r in q.query_all("t", where, fields=["id"])] == want
        page = q.query("t", where, limit=7, explain=True)
        assert page["count"] == 7 and page["explain"]["key"] == "kind,n"
        assert q.explain("t", where)["rows_matched"] == len(want)
        assert [k["fields"] for k in q.keys("t")["declared"]] == [["kind", "n"]]
        assert ["id"] in q.accept_key("t", ["id"])["accepted"]
        assert "built" in q.build_keys("t")
        res = q.join("t", [{"id": 5}, {"id": 999}], ["id"], how="left", fields=["id", "n"])
        assert [(r["id"], r["_probe"]) for r in res["rows"]] == [(5, 0), (None, 1)]
        with pytest.raises(BadRequest, match="unknown field"):
            q.query("t", {"zz": 1})
