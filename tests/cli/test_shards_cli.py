"""quarry shards ..., and the shard backend options of find and serve."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
from typer.testing import CliRunner

from quarry.cli import app
from tests.support import FIXTURES, free_port, json_lines, quarry_cmd, running

runner = CliRunner()
LOGS = FIXTURES / "iplog" / "stable_dispatcher"


def q(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def _ingest(data: Path) -> None:
    code, _, err = q("ingest", "logs", "iplog", str(LOGS), "--chunk-rows", "400",
                     "--data", str(data))
    assert code == 0, err


def test_layout_and_find_on_a_pool_agree(tmp_path: Path) -> None:
    _ingest(tmp_path)
    code, out, _ = q("shards", "layout", "iplog", "--shards", "3", "--json",
                       "--data", str(tmp_path))
    shards = json_lines(out)
    assert code == 0 and len(shards) == 3 and sum(s["rows"] for s in shards) == 5001
    code, local, _ = q("find", "ips", "iplog", "-n", "5", "--data", str(tmp_path))
    code2, pooled, err = q("find", "ips", "iplog", "-n", "5", "--workers", "2", "--shards", "3",
                           "--data", str(tmp_path))
    assert code == code2 == 0 and local == pooled, err
    code, _, err = q("find", "ips", "iplog", "--workers", "2", "--remote", "http://x",
                     "--data", str(tmp_path))
    assert code == 2 and "choose one shard backend" in err


def test_status_wake_sleep_of_a_served_pool(tmp_path: Path) -> None:
    _ingest(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(quarry_cmd("serve", "--data", str(tmp_path), "--port", str(port),
                            "--shard-workers", "2", "--shards", "2"), f"{url}/health"):
        code, out, err = q("shards", "status", "--url", url, "--dataset", "iplog", "--json")
        body = orjson.loads(out)
        assert code == 0 and body["backend"] == "pool" and body["workers"] == 2, err
        sid = body["shards"][0]["id"]
        code, out, _ = q("shards", "wake", sid, "--url", url, "--json")
        assert code == 0 and orjson.loads(out)["state"] == "awake"
        code, out, _ = q("shards", "sleep", sid, "--url", url, "--json")
        assert code == 0 and orjson.loads(out)["state"] == "asleep"
        # With a pool the original route skips the hot path and runs on the shards.
        r = httpx.get(f"{url}/datasets/iplog/find/[1.2.3.4]/0/2000000000/")
        assert r.status_code == 200 and r.json() == []
        load = orjson.loads(q("shards", "status", "--url", url, "--json")[1])["shards"]
        assert sum(s["load"]["queries"] for s in load) >= 2
        code, _, err = q("shards", "wake", "nope/1", "--url", url)
        assert code == 3 and "no shard" in err


def test_serve_refuses_a_local_ray_per_worker(tmp_path: Path) -> None:
    code, _, err = q("serve", "--data", str(tmp_path), "--ray", "--workers", "2",
                     "--port", str(free_port()))
    assert code == 2 and "--ray-address" in err
