from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarry.cli import app
from quarry.server.settings import ServeSettings
from tests.index.test_line_index import oracle_lines
from tests.store.test_full_disk import fail_head_writes
from tests.support import FIXTURES, free_port, json_lines, quarry_cmd

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
    assert json_lines(out)[0]["name"] == "frank"
    code, out, _ = q(d, "ls")
    assert code == 0 and "frank" in out
    code, out, _ = q(d, "info", "frank", "--json")
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
    assert [x["name"] for x in json_lines(q(d, "ls", "--json")[1])] == ["frank"]


def test_real_process_exit_code(tmp_path: Path) -> None:
    r = subprocess.run(quarry_cmd("get", "nope", "1", "--data", str(tmp_path)),
                       capture_output=True, text=True)
    assert r.returncode == 3
    assert "error: no dataset named 'nope'" in r.stderr



def test_reading_commands_refuse_a_missing_or_foreign_data_folder(tmp_path: Path) -> None:
    """A mistyped --data is an error for commands that only read, and nothing is created
    there; put (and serve) still make a new data folder."""
    missing = tmp_path / "typo"
    for args in (["ls"], ["get", "x", "1"], ["info", "x"]):
        r = runner.invoke(app, [*args, "--data", str(missing)])
        assert r.exit_code == 3 and "does not exist" in r.stderr, args
    assert not missing.exists()
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "readme").write_text("hi")
    r = runner.invoke(app, ["ls", "--data", str(foreign)])
    assert r.exit_code == 3 and "not a Quarry data folder" in r.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["readme"]
    a_file = foreign / "readme"
    r = runner.invoke(app, ["ls", "--data", str(a_file)])
    assert r.exit_code == 2 and "is a file, not a folder" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is an empty store
    r = runner.invoke(app, ["ls", "--data", str(empty)])
    assert r.exit_code == 0 and "no datasets in" in r.stdout
    r = runner.invoke(app, ["put", "f", str(FRANKENSTEIN), "--data", str(missing)])
    assert r.exit_code == 0
    assert runner.invoke(app, ["get", "f", "1", "--data", str(missing)]).exit_code == 0


def test_get_messages_number_lines_as_the_user_does(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    f = tmp_path / "four.txt"
    f.write_bytes(b"a\r\nb\r\nc\r\nd\r\n")
    assert runner.invoke(app, ["put", "four", str(f), "--data", d]).exit_code == 0
    r = runner.invoke(app, ["get", "four", "5", "--data", d])
    assert r.exit_code == 5 and "line 5 is beyond the end of four (4 lines)" in r.stderr
    r = runner.invoke(app, ["get", "four", "4", "--index-base", "0", "--data", d])
    assert r.exit_code == 5 and "line 4 is beyond" in r.stderr
    r = runner.invoke(app, ["get", "four", "--data", d, "--", "-1"])
    assert r.exit_code == 2 and "positive integer, got '-1'" in r.stderr



def test_serve_on_a_busy_port_fails_before_adding_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = runner.invoke(app, ["serve", str(FRANKENSTEIN), "--port", str(port),
                                "--data", str(tmp_path / "d")])
    assert r.exit_code == 6 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "serving" not in r.stdout and "new version" not in r.stdout
    assert not (tmp_path / "d").exists()
    # A host this machine cannot listen on is refused the same way, before anything is added.
    r = runner.invoke(app, ["serve", str(FRANKENSTEIN), "--host", "no-such-host.invalid",
                            "--data", str(tmp_path / "d")])
    assert r.exit_code == 2 and "--host 'no-such-host.invalid'" in r.stderr
    r = runner.invoke(app, ["serve", str(FRANKENSTEIN), "--host", "192.0.2.1",
                            "--data", str(tmp_path / "d")])  # TEST-NET: not this machine's
    assert r.exit_code == 6 and "cannot listen on 192.0.2.1" in r.stderr
    assert not (tmp_path / "d").exists()


def test_output_errors_of_a_real_process(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    f = tmp_path / "many.txt"
    f.write_bytes(b"".join(b"%d\n" % i for i in range(200_000)))
    assert runner.invoke(app, ["put", "many", str(f), "--data", d]).exit_code == 0
    # A reader that goes away early: quiet, with the code of a process SIGPIPE stopped.
    p = subprocess.Popen(quarry_cmd("get", "many", "1", "--count", "200000", "--data", d),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.read(10)
    p.stdout.close()
    assert p.wait(30) == 141
    assert p.stderr is not None
    with p.stderr:
        assert p.stderr.read() == b""
    if Path("/dev/full").exists():  # a full disk is exit 7, as docs/cli.md says
        with open("/dev/full", "wb") as full:
            r = subprocess.run(quarry_cmd("get", "many", "1", "--count", "200000", "--data", d),
                               stdout=full, stderr=subprocess.PIPE, text=True)
        assert r.returncode == 7 and "no space left on device" in r.stderr


def test_errors_are_one_unwrapped_line_with_brackets_kept(tmp_path: Path) -> None:
    # Rich wraps at the terminal width and eats [markup]; an error names a path users copy.
    deep = tmp_path / ("x" * 60) / "[not-markup]" / "missing.txt"
    r = runner.invoke(app, ["put", "frank", str(deep), "--data", str(tmp_path / "d")],
                      env={"COLUMNS": "40"})
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(deep) in lines[0] and lines[0].startswith("error:")


def test_put_on_a_full_disk_leaves_no_dataset(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk during a first commit once left an empty @HEAD, which stopped serve
    (exit 3) and fsck (exit 8)."""
    d = str(tmp_path / "d")
    assert runner.invoke(app, ["put", "frank", str(FRANKENSTEIN), "--data", d]).exit_code == 0
    with monkeypatch.context() as m:
        fail_head_writes(m)
        r = runner.invoke(app, ["put", "full", str(FRANKENSTEIN), "--data", d])
    assert r.exit_code == 7 and "no space left on device" in r.stderr
    assert not (tmp_path / "d" / "refs" / "full" / "@HEAD").exists()
    assert runner.invoke(app, ["fsck", "--data", d]).exit_code == 0
    monkeypatch.setattr("quarry.server.runner.run", lambda settings: None)
    r = runner.invoke(app, ["serve", "--port", str(free_port()), "--data", d])
    assert r.exit_code == 0 and r.stderr == "" and "serving 1 dataset(s)" in r.stdout


def test_serve_skips_a_dataset_with_a_damaged_head(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty @HEAD (as older versions left on a full disk): serve starts with what is
    whole and names what it skipped; fsck explains the damage."""
    d = str(tmp_path / "d")
    assert runner.invoke(app, ["put", "frank", str(FRANKENSTEIN), "--data", d]).exit_code == 0
    broken = tmp_path / "d" / "refs" / "broken" / "@HEAD"
    broken.parent.mkdir()
    broken.write_bytes(b"")
    started: list[ServeSettings] = []
    monkeypatch.setattr("quarry.server.runner.run", started.append)
    r = runner.invoke(app, ["serve", "--port", str(free_port()), "--data", d])
    assert r.exit_code == 0, r.stderr
    assert started and started[0].default_dataset == "frank"
    assert "serving 1 dataset(s)" in r.stdout
    assert r.stderr.startswith("skipped dataset broken: its HEAD")
    r = runner.invoke(app, ["fsck", "--data", d])
    assert r.exit_code == 8
    assert f"ref broken HEAD: {broken} holds no whole version record (0 bytes" in r.stdout
    code, out, _ = q(tmp_path / "d", "ls", "--json")
    assert code == 0 and [x["name"] for x in json_lines(out)] == ["frank"]


def test_serve_skips_a_head_that_is_a_folder(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder where the HEAD log should be: every command said only 'error: Is a
    directory' (exit 1) and serve did not start."""
    d = str(tmp_path / "d")
    assert runner.invoke(app, ["put", "frank", str(FRANKENSTEIN), "--data", d]).exit_code == 0
    (tmp_path / "d" / "refs" / "broken" / "@HEAD").mkdir(parents=True)
    started: list[ServeSettings] = []
    monkeypatch.setattr("quarry.server.runner.run", started.append)
    r = runner.invoke(app, ["serve", "--port", str(free_port()), "--data", d])
    assert r.exit_code == 0 and started, r.stderr
    assert r.stderr.startswith("skipped dataset broken:") and "@HEAD" in r.stderr
    code, out, _ = q(tmp_path / "d", "ls", "--json")
    assert code == 0 and [x["name"] for x in json_lines(out)] == ["frank"]
    r = runner.invoke(app, ["fsck", "--data", d])
    assert r.exit_code == 8 and "Is a directory" in r.output
