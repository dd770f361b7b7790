"""The command line's contract: fast start (no heavy import), --version, one meaning per
short flag, one `error:` line per failure, unwrapped output, compact --json, and a subscribe
that says so when there is no bus. Start-up *time* is measured by bench/cli.py, not here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import quarry
from quarry.cli import app
from tests.support import FIXTURES, free_port, json_lines, quarry_cmd

runner = CliRunner()
HEAVY = ("pyarrow", "numpy", "fastapi", "starlette", "uvicorn", "aiohttp", "zmq", "httpx",
         "rich", "pydantic_settings")
FRANKENSTEIN = Path(quarry.__file__).parent / "demo" / "frankenstein.txt"


def _loaded_after(code: str) -> list[str]:
    probe = (f"import sys; {code}; "
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    return list(json.loads(out.replace("'", '"')))


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert _loaded_after("import quarry.cli") == []


def test_listing_a_data_folder_loads_no_heavy_module(tmp_path: Path) -> None:
    """`quarry ls` and `quarry info` read refs and manifests only."""
    data = tmp_path / "d"
    assert runner.invoke(app, ["put", "f", str(FRANKENSTEIN), "--data", str(data)]).exit_code == 0
    code = ("from quarry.cli import app; from typer.testing import CliRunner; "
            f"r = CliRunner().invoke(app, ['ls', '--data', {str(data)!r}]); "
            "assert r.exit_code == 0, r.output; "
            f"r = CliRunner().invoke(app, ['info', 'f', '--data', {str(data)!r}]); "
            "assert r.exit_code == 0, r.output")
    assert [m for m in _loaded_after(code) if m in ("pyarrow", "numpy", "fastapi")] == []


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    r = subprocess.run(quarry_cmd(flag), capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == f"quarry {quarry.__version__}\n"


def _options(command: Any, path: str, found: dict[str, set[str]]) -> None:
    subs = getattr(command, "commands", None)
    if subs is not None:
        for name, sub in subs.items():
            _options(sub, f"{path} {name}", found)
    for p in getattr(command, "params", []):
        forms = [*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ())]
        longs = [f for f in forms if f.startswith("--")]
        for short in (f for f in forms if re.fullmatch(r"-\w", f)):
            found.setdefault(short, set()).update(longs or [f"(none, in {path})"])


def test_each_short_flag_means_one_thing() -> None:
    found: dict[str, set[str]] = {}
    _options(typer.main.get_command(app), "quarry", found)
    clashes = {short: longs for short, longs in found.items() if len(longs) != 1}
    assert not clashes, clashes
    # The table in docs/cli.md lists every short flag with its one long name.
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for short, (long,) in ((s, tuple(v)) for s, v in found.items()):
        assert re.search(rf"\| `{short}`[^|]*\| `{long}\b", doc), (short, long)


def test_a_usage_error_is_one_error_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ls", "--bogus", "--data", str(tmp_path)])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: No such option: --bogus") and r.stderr.count("\n") == 1


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "d"
    assert runner.invoke(app, ["put", "f", str(FRANKENSTEIN), "--data", str(data)]).exit_code == 0

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("quarry.catalog.datasets", broken)
    r = runner.invoke(app, ["ls", "--data", str(data)])
    assert r.exit_code == 70, r.output
    assert r.stderr.startswith("error: unexpected RuntimeError: boom")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    r = runner.invoke(app, ["--debug", "ls", "--data", str(data)])
    assert isinstance(r.exception, RuntimeError)  # raised on: the hook prints the traceback


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """In a real process: --debug gives Python's traceback of an unexpected error."""
    code = ("import sys, quarry.catalog as c\n"
            "def broken(*a): raise RuntimeError('boom')\n"
            "c.datasets = broken\n"
            "from quarry.cli import main\n"
            "main()\n")
    base = [sys.executable, "-c", code]
    plain = subprocess.run([*base, "ls", "--data", str(tmp_path)], capture_output=True,
                           text=True, cwd=tmp_path)
    (tmp_path / "d").mkdir()
    assert plain.returncode != 0 and "Traceback" not in plain.stderr
    r = runner.invoke(app, ["put", "f", str(FRANKENSTEIN), "--data", str(tmp_path / "d")])
    assert r.exit_code == 0
    debug = subprocess.run([*base, "--debug", "ls", "--data", str(tmp_path / "d")],
                           capture_output=True, text=True)
    assert "Traceback" in debug.stderr and "RuntimeError: boom" in debug.stderr
    plain = subprocess.run([*base, "ls", "--data", str(tmp_path / "d")], capture_output=True,
                           text=True)
    assert plain.returncode == 70 and "Traceback" not in plain.stderr


def test_output_is_not_wrapped_when_piped(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    message = "a commit message long enough to cross eighty columns " * 3
    subprocess.run(quarry_cmd("put", "f", str(FRANKENSTEIN), "-m", message, "--data", data),
                   check=True, capture_output=True)
    out = subprocess.run(quarry_cmd("versions", "f", "--data", data), capture_output=True,
                         text=True, check=True).stdout
    assert message.strip() in out and len(out.splitlines()) == 2  # header and one row
    err = subprocess.run(quarry_cmd("get", "f", "1", "--data", data + "/" + "x" * 120),
                         capture_output=True, text=True).stderr
    assert err.count("\n") == 1 and "x" * 120 in err


def test_json_is_compact_lines(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    for name in ("a", "b"):
        assert runner.invoke(app, ["put", name, str(FRANKENSTEIN), "--data", data]).exit_code == 0
    r = runner.invoke(app, ["info", "a", "--json", "--data", data])
    assert r.exit_code == 0 and r.stdout.count("\n") == 1 and json.loads(r.stdout)["name"] == "a"
    r = runner.invoke(app, ["ls", "--json", "--data", data])
    assert [x["name"] for x in json_lines(r.stdout)] == ["a", "b"]
    assert r.stdout.count("\n") == 2 and ": " not in r.stdout  # compact
    r = runner.invoke(app, ["put", "a", str(FRANKENSTEIN), "--json", "--data", data])
    assert json.loads(r.stdout)["created"] is False
    r = runner.invoke(app, ["ingest", "logs", "ip", str(FIXTURES / "iplog" / "1k.csv"),
                            "--json", "--data", data])
    assert json.loads(r.stdout)["rows"] == 1000


def test_subscribe_without_a_bus_says_so() -> None:
    """`quarry serve` runs no bus: subscribe used to wait there silently forever."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    r = subprocess.run(quarry_cmd("subscribe", "--endpoint", endpoint,
                                  "--connect-timeout", "0.5"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 6
    assert r.stderr.startswith(f"error: no event bus answered at {endpoint} within 0.5 s")
    assert "`quarry up` runs the bus" in r.stderr
