from __future__ import annotations

from pathlib import Path

import pytest

from quarry.config import load_config, parse_config
from quarry.errors import BadRequest, NotFound

DEMO = Path(__file__).resolve().parent.parent / "src" / "quarry" / "demo" / "quarry.yaml"


def test_bundled_example_parses() -> None:
    cfg = load_config(DEMO)
    assert [s.name for s in cfg.stages] == ["condition", "results"]
    assert cfg.stages[0].run and cfg.stages[1].call == "quarry.demo.qplan:totals"
    assert cfg.data == DEMO.parent / "quarry-data"
    assert cfg.pub == "tcp://127.0.0.1:5100" and cfg.rep == "tcp://127.0.0.1:5000"
    assert cfg.legacy_pub == "tcp://127.0.0.1:5101"


def test_defaults_and_compat_off(tmp_path: Path) -> None:
    cfg = parse_config({"compat": False}, tmp_path)
    assert cfg.rep is None and cfg.stages == () and cfg.port == 8080
    assert cfg.legacy_pub == "tcp://127.0.0.1:5101"


def test_legacy_frames_have_their_own_endpoint(tmp_path: Path) -> None:
    cfg = parse_config({"events": {"legacy_pub": "tcp://127.0.0.1:6001"}}, tmp_path)
    assert cfg.legacy_pub == "tcp://127.0.0.1:6001" and cfg.pub == "tcp://127.0.0.1:5100"
    assert parse_config({"events": {"legacy_pub": False}}, tmp_path).legacy_pub is None


def stage(**kw: object) -> dict[str, object]:
    return {"name": "s", "source": "a", "target": "b", "run": "cat", **kw}


@pytest.mark.parametrize(("doc", "why"), [
    ([1, 2], "mapping"),
    ({"bogus": 1}, "unknown key"),
    ({"http": {"port": "x"}}, "port"),
    ({"http": {"port": 70000}}, "port"),
    ({"http": {"hots": "x"}}, "unknown key"),
    ({"http": {"workers": 0}}, "workers"),
    ({"http": {"workers": "2"}}, "workers"),
    ({"http": {"workers": True}}, "workers"),
    ({"events": {"pub": "localhost:5100"}}, "ZeroMQ endpoint"),
    ({"compat": {"rep": 5000}}, "ZeroMQ endpoint"),
    ({"events": {"legacy": True}}, "replaced by events.legacy_pub"),
    ({"events": {"legacy_pub": "5101"}}, "ZeroMQ endpoint"),
    ({"events": {"legacy_pub": "tcp://127.0.0.1:5100"}}, "endpoint of its own"),
    ({"compat": {"rep": "tcp://127.0.0.1:5101"}}, "endpoint of its own"),
    ({"pipelines": {"a": 1}}, "list"),
    ({"pipelines": ["x"]}, "mapping"),
    ({"pipelines": [{"name": "s"}]}, "source"),
    ({"pipelines": [stage(call="m:f")]}, "exactly one"),
    ({"pipelines": [{"name": "s", "source": "a", "target": "b"}]}, "exactly one"),
    ({"pipelines": [stage(run="")]}, "shell command"),
    ({"pipelines": [stage(run=None, call="nocolon")]}, "module:function"),
    ({"pipelines": [stage(kind="table")]}, "unknown kind"),
    ({"pipelines": [stage(timeout=-1)]}, "timeout"),
    ({"pipelines": [stage(source="bad name")]}, "invalid dataset name"),
    ({"pipelines": [stage(name="bad name")]}, "invalid stage name"),
    ({"pipelines": [stage(extra=1)]}, "unknown key"),
    ({"pipelines": [stage(), stage()]}, "duplicate"),
    ({"pipelines": [stage(source="a", target="a")]}, "cycle"),
    ({"pipelines": [stage(), stage(name="t", source="b", target="a")]}, "cycle"),
])
def test_bad_configs(tmp_path: Path, doc: object, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        parse_config(doc, tmp_path)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines: [\n")
    with pytest.raises(BadRequest, match="not valid YAML"):
        load_config(bad)
