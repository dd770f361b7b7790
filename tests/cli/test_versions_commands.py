"""put --kind, cat, versions, alias, gc, fsck, pipeline: through the CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from quarry.cli import app
from tests.support import json_lines

runner = CliRunner()


def q(data: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, [*args, "--data", str(data)], input=stdin)
    return r.exit_code, r.stdout, r.stderr


def test_document_versions_aliases(tmp_path: Path) -> None:
    d = tmp_path / "d"
    code, out, _ = q(d, "put", "docs/a", "-", "--kind", "document", "-m", "one", stdin=b"\x00v1")
    assert code == 0 and "new version" in out and "lines" not in out
    code, out, _ = q(d, "put", "docs/a", "-", stdin=b"\x00v2")  # keeps its kind
    assert code == 0
    code, out, _ = q(d, "versions", "docs/a", "--json")
    rows = json_lines(out)
    assert [r["kind"] for r in rows] == ["document", "document"] and rows[1]["message"] == "one"
    v1 = rows[1]["version"]
    code, out, _ = q(d, "cat", "docs/a", "--version", v1[:6])
    assert code == 0 and out.encode() == b"\x00v1"
    assert q(d, "alias", "docs/a", "prod", v1[:8])[0] == 0
    assert q(d, "cat", "docs/a", "-v", "prod")[1].encode() == b"\x00v1"
    code, out, _ = q(d, "versions", "docs/a")
    assert code == 0 and "prod" in out
    code, _, err = q(d, "put", "docs/a", "-", "--if-match", v1, stdin=b"v3")
    assert code == 4 and "not" in err
    assert q(d, "alias", "docs/a", "prod", "--delete")[0] == 0
    assert q(d, "cat", "docs/a", "-v", "prod")[0] == 3


def test_bad_input_exit_codes(tmp_path: Path) -> None:
    d = tmp_path / "d"
    q(d, "put", "t", "-", stdin=b"a\nb\n")
    assert q(d, "put", "t", "-", "--kind", "document", stdin=b"x")[0] == 4  # kind change
    assert q(d, "put", "n", "-", "--kind", "records", stdin=b"x")[0] == 2
    assert q(d, "put", "bad name", "-", "--kind", "document", stdin=b"x")[0] == 2
    assert q(d, "cat", "nope")[0] == 3
    assert q(d, "cat", "t", "-v", "abc")[0] == 2
    assert q(d, "alias", "t", "HEAD")[0] == 2
    assert q(d, "versions", "nope")[0] == 3
    assert q(d, "gc", "--keep", "0")[0] == 2
    code, out, _ = q(d, "cat", "t")
    assert code == 0 and out == "a\nb\n"


def test_gc_and_fsck(tmp_path: Path) -> None:
    d = tmp_path / "d"
    for i in range(4):
        q(d, "put", "g", "-", "--kind", "document", stdin=b"%d" % i)
    code, out, _ = q(d, "gc", "--keep", "1", "--grace", "0")
    assert code == 0 and "would remove 3 version(s)" in out and "--apply" in out
    code, out, _ = q(d, "gc", "--keep", "1", "--grace", "0", "--apply", "--json")
    assert code == 0 and len(json.loads(out)["dropped_versions"]) == 3
    code, out, _ = q(d, "fsck")
    assert code == 0 and "ok" in out
    blob = next(p for p in (d / "blobs").rglob("*") if p.is_file())
    blob.chmod(0o644)
    blob.write_bytes(b"damaged")
    code, out, _ = q(d, "fsck", "--json")
    assert code == 8 and json.loads(out)["problems"][0]["what"] == "blob"


def test_pipeline_commands(tmp_path: Path) -> None:
    d = tmp_path / "d"
    cfg = tmp_path / "quarry.yaml"
    flag = tmp_path / "go"
    cfg.write_text(f"data: {d}\npipelines:\n  - name: copy\n    source: src\n    target: dst\n"
                   f"    run: test -e {flag} && tr a-z A-Z\n")
    q(d, "put", "src", "-", stdin=b"hello\n")
    r = runner.invoke(app, ["pipeline", "retry", "--config", str(cfg)])
    assert r.exit_code == 1 and "failed" in r.stdout
    r = runner.invoke(app, ["pipeline", "status", "--config", str(cfg), "--json"])
    assert r.exit_code == 0 and len(json_lines(r.stdout)[0]["failed"]) == 1
    flag.touch()
    r = runner.invoke(app, ["pipeline", "retry", "copy", "--config", str(cfg)])
    assert r.exit_code == 0 and "done" in r.stdout
    assert q(d, "cat", "dst")[1] == "HELLO\n"
    r = runner.invoke(app, ["pipeline", "retry", "nostage", "--config", str(cfg)])
    assert r.exit_code == 3
    r = runner.invoke(app, ["pipeline", "status", "--config", str(tmp_path / "no.yaml")])
    assert r.exit_code == 3


def test_subscribe_and_up_bad_input(tmp_path: Path) -> None:
    r = runner.invoke(app, ["subscribe", "--endpoint", "not-an-endpoint", "-c", "1"])
    assert r.exit_code == 2 and "cannot subscribe" in r.stderr
    cfg = tmp_path / "quarry.yaml"
    cfg.write_text("pipelines:\n  - name: a\n    source: x\n    target: x\n    run: cat\n")
    r = runner.invoke(app, ["up", "--config", str(cfg)])
    assert r.exit_code == 2 and "cycle" in r.stderr
    r = runner.invoke(app, ["up", "--config", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 3
