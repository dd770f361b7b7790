from __future__ import annotations

import re
from pathlib import Path

import pytest

from quarry.config import Curve, is_local_endpoint, load_config, parse_config
from quarry.errors import BadConfig, BadRequest, NotFound

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


@pytest.mark.parametrize("key", ["events.pub", "events.legacy_pub", "compat.rep"])
@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:7001", "tcp://*:7001",
                                      "tcp://192.168.1.5:7001", "tcp://eth0:7001",
                                      "tcp://[::]:7001", "tcp://example.org:7001"])
def test_public_zmq_endpoints_need_curve(tmp_path: Path, key: str, endpoint: str) -> None:
    section, name = key.split(".")
    doc = {section: {name: endpoint}}
    with pytest.raises(BadConfig, match=f"{key} {re.escape(endpoint)} listens beyond "
                                        "loopback.*'curve'"):
        parse_config(doc, tmp_path)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "server.key_secret").write_text("")
    cfg = parse_config({**doc, "curve": {"server_key": "keys/server.key_secret",
                                         "clients": "keys"}}, tmp_path)
    assert cfg.curve == Curve(tmp_path / "keys" / "server.key_secret", tmp_path / "keys")


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:7001", "tcp://127.0.0.2:7001",
                                      "tcp://localhost:7001", "tcp://[::1]:7001",
                                      "ipc:///tmp/quarry.sock", "inproc://quarry"])
def test_loopback_zmq_endpoints_need_no_curve(tmp_path: Path, endpoint: str) -> None:
    assert is_local_endpoint(endpoint)
    assert parse_config({"compat": {"rep": endpoint}}, tmp_path).curve is None


@pytest.mark.parametrize(("curve", "why"), [
    ({"server_key": "missing", "clients": "."}, "curve.server_key: .* is not a file"),
    ({"server_key": "k", "clients": "missing"}, "curve.clients: .* is not a folder"),
    ({"server_key": "k"}, "curve.clients must be the path of a folder"),
    ({"server_key": "k", "clients": ".", "extra": 1}, "unknown key"),
    ("keys", "must be a mapping"),
])
def test_bad_curve_sections(tmp_path: Path, curve: object, why: str) -> None:
    (tmp_path / "k").write_text("")
    with pytest.raises(BadRequest, match=why):
        parse_config({"curve": curve}, tmp_path)


def test_access_section(tmp_path: Path) -> None:
    cfg = parse_config({"access": {"token": "t0k", "closed": ["vault", "a/b"]}}, tmp_path)
    assert cfg.token == "t0k" and cfg.closed == ("vault", "a/b")
    assert parse_config({}, tmp_path).token is None
    for bad in ({"token": ""}, {"token": 5}, {"closed": "vault"}, {"closed": ["a/lines"]},
                {"other": 1}):
        with pytest.raises(BadRequest):
            parse_config({"access": bad}, tmp_path)
