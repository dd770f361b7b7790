"""The CLI passes the where language through: ``quarry query --where`` with ``-w`` ANDed to
it, and ``quarry stats -w JSON`` on an access log (whose fields store physical types)."""

from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from quarry.cli import app
from tests.support import FIXTURES

runner = CliRunner()
LOG = FIXTURES / "accesslogs" / "apache_logs_head1500"


def run(data: Path, *args: str) -> Any:
    r = runner.invoke(app, [*args, "--data", str(data)])
    assert r.exit_code == 0, r.output
    return r


def test_stats_and_query_take_where_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run(data, "ingest", "logs", "weblogs", str(LOG))
    lines = LOG.read_text().splitlines()
    errors = sum(1 for x in lines if x.split('"')[2].split()[0] >= "400")
    out = orjson.loads(run(data, "stats", "weblogs", "-a", "count",
                           "-w", '{"status": {"gte": 400}}', "--json").stdout)
    assert out["results"]["count"] == errors
    r = run(data, "query", "weblogs", "--where", '{"status": {"gte": 400}}', "-w", "status=404",
            "--limit", "100000", "--json")
    rows = [orjson.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert rows and all(x["status"] == 404 for x in rows)
    r = runner.invoke(app, ["stats", "weblogs", "-w", '{"status": "x"}', "--data", str(data)])
    assert r.exit_code == 2 and "status" in r.output
