"""quarry ingest api, quarry stats (dataset and api), quarry mock-api: through the CLI."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarry.cli import app
from quarry.store import Store
from tests.connectors.test_fetch_mock import FIRST, LAST, mock, oracle

runner = CliRunner()


def q(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with mock() as url:
        yield f"{url}/v1/foodipedia/foodstats"


def test_ingest_then_stats(tmp_path: Path, api_url: str) -> None:
    d = str(tmp_path / "d")
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"default:\n  url: {api_url}\n  pool: 2\n  rate_limit: 0\n"
                   f"  first_id: {FIRST}\n  last_id: {LAST}\ntest:\n  pool: 4\n")
    code, out, err = q("ingest", "api", "food", "--config", str(cfg), "--env", "test",
                       "--data", d)
    assert code == 0, err
    assert "new version" in out and "2000 items" in out
    items = oracle()
    cat8 = [it for it in items if it["food__category_id"] == 8]
    code, out, err = q("stats", "food", "-a", "count", "-a", "top_k:food_id:2",
                       "-w", "food__category_id=8", "--json", "--data", d)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["results"]["count"] == len(cat8)
    c = Counter(it["food_id"] for it in cat8)
    assert doc["results"]["top_k(food_id,2)"]["top"] == [
        [v, n] for v, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:2]]
    code, out, _ = q("stats", "dataset", "food", "-a", "max:id", "-w", f"id={FIRST}..658331000",
                     "--json", "--data", d)
    assert json.loads(out)["results"]["max(id)"] == max(
        it["id"] for it in items if it["id"] <= 658331000)


def test_stats_api_defaults_to_the_original_statistics(api_url: str) -> None:
    code, out, err = q("stats", "api", "--url", api_url, "--first-id", str(FIRST),
                       "--last-id", str(LAST), "--rate-limit", "0", "--pool", "3", "--json")
    assert code == 0, err
    res = json.loads(out)["results"]
    assert res["count"] == 2000
    assert len(res["top_k(food_id,100)"]["top"]) == 100
    assert res["top_k(food__category_id,10)"]["top"][0] == [8, 107]


@pytest.mark.parametrize("args, message", [
    (["--where", "nonsense"], "bad --where"),
    (["-a", "top_k:x:zero"], "unexpected 'zero'"),
    (["--config", "/nonexistent.yml"], "does not exist"),
])
def test_bad_input_is_exit_2_and_writes_nothing(tmp_path: Path, args: list[str],
                                                message: str) -> None:
    code, _, err = q("stats", "api", "--url", "http://127.0.0.1:1/x", *args)
    assert code == 2 and message in err


def test_bad_config_writes_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("default:\n  url: http://127.0.0.1:1/x\n  rate_limit: fast\n")
    d = tmp_path / "d"
    code, _, err = q("ingest", "api", "food", "--config", str(cfg), "--data", str(d))
    assert code == 2 and "rate_limit must be a number" in err
    assert Store(d).datasets() == []


def test_unreachable_api_gives_up_clearly(tmp_path: Path) -> None:
    d = tmp_path / "d"
    code, _, err = q("ingest", "api", "food", "--url", "http://127.0.0.1:1/x", "--retries", "1",
                     "--last-id", "10", "--data", str(d))
    assert code == 6 and "gave up after 2 tries" in err
    assert Store(d).datasets() == []


def test_mock_api_needs_one_source() -> None:
    code, _, err = q("mock-api")
    assert code == 2 and "--pages DIR or --synthetic N" in err
    code, _, err = q("mock-api", "--synthetic", "5", "--faults", "404@1")
    assert code == 2 and "bad fault" in err
