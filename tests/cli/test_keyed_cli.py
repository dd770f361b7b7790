"""quarry ingest table / query / explain / keys / join, in process."""

from pathlib import Path

import orjson
from typer.testing import CliRunner

from quarry.cli import app

runner = CliRunner()


def test_table_round_trip(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    f = tmp_path / "p.csv"
    f.write_text("id,name,ip\n" + "".join(f"{i},n{i % 5},10.0.0.{i}\n" for i in range(50)))
    r = runner.invoke(app, ["ingest", "table", "p", str(f), "--key", "name,id", "--sort-key",
                            "id", "--type", "id=int", "--chunk-rows", "16", "--data", data])
    assert r.exit_code == 0, r.output
    assert "keys: name,id" in r.output
    r = runner.invoke(app, ["query", "p", "-w", "name=n3", "--where", '{"id": {"lt": 20}}',
                            "--fields", "id", "--json", "--data", data])
    assert r.exit_code == 0, r.output
    assert [orjson.loads(x)["id"] for x in r.stdout.splitlines()] == [3, 8, 13, 18]
    r = runner.invoke(app, ["explain", "p", "-w", "name=n3", "--json", "--data", data])
    e = orjson.loads(r.stdout)
    assert e["key"] == "name,id" and e["rows_examined"] == 10
    r = runner.invoke(app, ["keys", "p", "--accept", "ip", "--json", "--data", data])
    assert orjson.loads(r.stdout)["accepted"] == [["ip"]]
    probes = tmp_path / "probes.csv"
    probes.write_text("name\nn1\nzz\n")
    r = runner.invoke(app, ["join", "p", str(probes), "--on", "name", "--how", "anti",
                            "--json", "--data", data])
    assert [orjson.loads(x)["name"] for x in r.stdout.splitlines()] == ["zz"]
    r = runner.invoke(app, ["query", "p", "-w", "nope=1", "--data", data])
    assert r.exit_code == 2 and "unknown field" in r.output
