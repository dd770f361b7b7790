from __future__ import annotations

import json
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from quarry.cli import app
from tests.index.test_line_index import oracle_lines
from tests.support import FIXTURES, quarry_cmd

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"
EXPECTED = oracle_lines(FRANKENSTEIN.read_bytes())
runner = CliRunner()


def q(data: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, [*args, "--data", str(data)], input=stdin)
    return r.exit_code, r.stdout, r.stderr


def test_put_get_ls_info(tmp_path: Path) -> None:
    d = tmp_path / "d"
    code, out, _ = q(d, "put", "frank", str(FRANKENSTEIN), "-m", "first")
    assert code == 0 and "new version" in out
    code, out, _ = q(d, "put", "frank", str(FRANKENSTEIN))
    assert code == 0 and "unchanged" in out
    code, out, _ = q(d, "get", "frank", "2")
    assert code == 0 and out.encode() == EXPECTED[1] + b"\n"
    code, out, _ = q(d, "get", "frank", "2", "--count", "3")
    assert out.encode() == b"".join(x + b"\n" for x in EXPECTED[1:4])
    code, out, _ = q(d, "get", "frank", "0", "--index-base", "0")
    assert out.encode() == EXPECTED[0] + b"\n"
    code, out, _ = q(d, "ls", "--json")
    assert json.loads(out)[0]["name"] == "frank"
    code, out, _ = q(d, "ls")
    assert code == 0 and "frank" in out
    code, out, _ = q(d, "info", "frank")
    assert json.loads(out)["lines"] == len(EXPECTED)


def test_put_from_stdin_and_link(tmp_path: Path) -> None:
    d = tmp_path / "d"
    code, _, _ = q(d, "put", "s", "-", stdin=b"x\ny\n")
    assert code == 0
    assert q(d, "get", "s", "2")[1] == "y\n"
    f = tmp_path / "f.txt"
    f.write_text("l1\nl2\n")
    assert q(d, "put", "linked", str(f), "--link")[0] == 0
    f.write_text("changed\n")
    code, _, err = q(d, "get", "linked", "1")
    assert code == 6 and "changed" in err


def test_errors_have_messages_and_exit_codes(tmp_path: Path) -> None:
    d = tmp_path / "d"
    q(d, "put", "frank", str(FRANKENSTEIN))
    cases = [
        (("get", "frank", "0"), 2, "start at 1"),
        (("get", "frank", "abc"), 2, "integer"),
        (("get", "frank", "999999999"), 5, "beyond the end"),
        (("get", "nope", "1"), 3, "no dataset"),
        (("info", "nope"), 3, "no dataset"),
        (("put", "bad name", str(FRANKENSTEIN)), 2, "invalid dataset name"),
        (("put", "x", str(tmp_path / "missing")), 3, "no such file"),
        (("put", "x", "-", "--link"), 2, "--link"),
        (("get", "frank", "1", "--index-base", "7"), 2, "index-base"),
        (("put", "x", str(FRANKENSTEIN), "--index", "weird"), 2, "mode"),
    ]
    for args, code, msg in cases:
        got, _, err = q(d, *args)
        assert got == code, (args, got, err)
        assert msg in err, (args, err)
    # Nothing was added by the failed commands.
    assert [x["name"] for x in json.loads(q(d, "ls", "--json")[1])] == ["frank"]


def test_real_process_exit_code(tmp_path: Path) -> None:
    r = subprocess.run(quarry_cmd("get", "nope", "1", "--data", str(tmp_path)),
                       capture_output=True, text=True)
    assert r.returncode == 3
    assert "error: no dataset named 'nope'" in r.stderr


def test_errors_are_one_unwrapped_line_with_brackets_kept(tmp_path: Path) -> None:
    # Rich wraps at the terminal width and eats [markup]; an error names a path users copy.
    deep = tmp_path / ("x" * 60) / "[not-markup]" / "missing.txt"
    r = runner.invoke(app, ["put", "frank", str(deep), "--data", str(tmp_path / "d")],
                      env={"COLUMNS": "40"})
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(deep) in lines[0] and lines[0].startswith("error:")
