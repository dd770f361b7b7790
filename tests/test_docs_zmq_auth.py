"""docs/snapshots.md runs as written: every YAML block parses, and the CURVE section's
commands, configuration, client and refusal message are exercised against ``quarry up``
(real processes and sockets; only the documented ports are swapped for free ones)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from quarry.config import parse_config
from tests.support import free_port, quarry_cmd, running

DOC = (Path(__file__).resolve().parent.parent / "docs" / "snapshots.md").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def section(title: str) -> str:
    start = DOC.index(f"### {title}")
    ends = [e for e in (DOC.find("\n## ", start), DOC.find("\n### ", start + 4)) if e >= 0]
    return DOC[start:min(ends)] if ends else DOC[start:]


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def test_every_yaml_block_parses(tmp_path: Path) -> None:
    found = [body for lang, body in blocks(DOC) if lang == "yaml"]
    assert len(found) == 3
    parse_config(yaml.safe_load(found[0]), tmp_path)
    access = parse_config(yaml.safe_load(found[2]), tmp_path)
    assert access.token == "t0k" and access.closed == ("vault",)
    # The CURVE example names key files: they must exist (see the test below for real ones).
    (tmp_path / "keys" / "clients").mkdir(parents=True)
    (tmp_path / "keys" / "server.key_secret").write_text("")
    cfg = parse_config(yaml.safe_load(found[1]), tmp_path)
    assert cfg.curve is not None and cfg.rep == "tcp://0.0.0.0:5000"


def shims(folder: Path) -> dict[str, str]:
    """An environment where the documented ``python`` and ``quarry`` are this test's."""
    folder.mkdir()
    for name, line in (("python", f'exec {sys.executable} "$@"'),
                       ("quarry", f'exec {sys.executable} -m quarry "$@"')):
        path = folder / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.slow
def test_curve_section_runs_as_documented(tmp_path: Path) -> None:
    text = section("Authentication beyond loopback (CURVE)")
    (_, refusal), (_, keygen), (_, config), (_, client), (_, subscribe) = blocks(text)
    assert [lang for lang, _ in blocks(text)] == ["", "sh", "yaml", "python", "sh"]
    ports = {"5000": free_port(), "5100": free_port(), "5101": free_port()}

    def ported(s: str) -> str:
        return re.sub(r":(5000|5100|5101)\b", lambda m: f":{ports[m.group(1)]}", s)

    env = shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()

    # 1. The documented commands make the keys, where the configuration looks for them.
    subprocess.run(["bash", "-euo", "pipefail", "-c", keygen], cwd=work, env=env, check=True,
                   timeout=60)
    for name in ("keys/server.key", "keys/server.key_secret", "keys/clients/planner.key",
                 "planner.key_secret"):
        assert (work / name).is_file(), name

    # 2. Without its curve section the configuration is refused as documented.
    http = free_port()
    head = f"data: data\nhttp: {{host: 127.0.0.1, port: {http}}}\n"
    uncurved = config.split("\ncurve:", 1)[0] + "\n"
    (work / "plain.yaml").write_text(head + ported(uncurved))
    r = subprocess.run(quarry_cmd("up", "--config", "plain.yaml"), cwd=work, env=env,
                       capture_output=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.decode().strip() == ported(refusal.strip())
    assert "exits with 2" in text
    assert not (work / "data").exists()

    # 3. With it, quarry up serves the documented client and quarry subscribe.
    (work / "quarry.yaml").write_text(head + ported(config))
    base = f"http://127.0.0.1:{http}"
    with running(quarry_cmd("up", "--config", str(work / "quarry.yaml")), f"{base}/healthz"):
        sub = subprocess.Popen(["bash", "-euo", "pipefail", "-c", ported(subscribe)],
                               cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        try:
            # The CLI takes a second or two to start and subscribe: commit until it has heard
            # one (a PUB sends nothing to a subscriber not yet connected).
            for n in range(60):
                if sub.poll() is not None:
                    break
                httpx.put(f"{base}/datasets/qplan/raw", content=f"warm-up {n}\n".encode())
                time.sleep(0.5)
            events, errs = sub.communicate(timeout=30)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
        assert sub.returncode == 0, errs
        event = orjson.loads(events)
        assert (event["dataset"], event["event"]) == ("qplan/raw", "commit")

        out = subprocess.run([sys.executable, "-c", ported(client)], cwd=work, env=env,
                             capture_output=True, timeout=60, check=True)
        assert out.stdout.decode().strip() == "b'OK'"
        assert httpx.get(f"{base}/datasets/qplan/raw/data").content == b"apple,3\n"
        before = httpx.get(f"{base}/datasets/qplan/raw/versions").json()["versions"]

        # A client without keys gets no answer, and nothing is committed.
        plain = client.replace("sock.curve_", "# sock.curve_").replace(
            "sock.connect(", "sock.setsockopt(zmq.RCVTIMEO, 1500); sock.connect(")
        r = subprocess.run([sys.executable, "-c", ported(plain)], cwd=work, env=env,
                           capture_output=True, timeout=60)
        assert r.returncode != 0 and b"Again" in r.stderr
        assert httpx.get(f"{base}/datasets/qplan/raw/versions").json()["versions"] == before
