"""Pipeline stages against a real store, real subprocesses and real Python callables."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.config import Stage
from quarry.datasets.kinds import put_bytes, read_data
from quarry.events.pipelines import Pipelines
from quarry.store import Store
from quarry.store.journal import FAILED, Event

RAW, COND, RES = "qplan/raw", "qplan/conditioned", "qplan/results"


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise TimeoutError("condition not met")


def data(store: Store, name: str) -> bytes:
    return read_data(store, store.snapshot(store.require_head(name))).read_all()


@pytest.fixture
def running(store: Store) -> Iterator[list[Pipelines]]:
    started: list[Pipelines] = []
    yield started
    for p in started:
        p.stop()


def start(store: Store, running: list[Pipelines], *stages: Stage,
          workdir: Path | None = None) -> Pipelines:
    p = Pipelines(store, stages, workdir=workdir)
    store.listeners.append(p.on_event)
    p.start()
    running.append(p)
    return p


def test_chain_shell_then_python(store: Store, running: list[Pipelines]) -> None:
    start(store, running,
          Stage("condition", RAW, COND, run="sed -e '/^#/d' -e 's/ //g' | sort"),
          Stage("results", COND, RES, call="quarry.demo.qplan:totals"))
    raw = put_bytes(store, RAW, b"# c\napple, 3\npear,2\napple,4\n", kind="lines")
    wait_for(lambda: store.head(RES) is not None)
    assert data(store, COND) == b"apple,3\napple,4\npear,2\n"
    assert data(store, RES) == b"apple,7\npear,2\n"
    cond = store.snapshot(store.require_head(COND))
    assert cond.kind == "lines"
    assert cond.lineage == ({"dataset": RAW, "version": raw.version, "stage": "condition"},)
    res = store.snapshot(store.require_head(RES))
    assert res.lineage[0]["version"] == store.require_head(COND)


def test_failure_commits_nothing_publishes_and_is_superseded(
        store: Store, running: list[Pipelines]) -> None:
    failures: list[Event] = []
    store.listeners.append(lambda e: failures.append(e) if e.event == FAILED else None)
    p = start(store, running, Stage("results", RAW, RES, call="quarry.demo.qplan:totals"))
    bad = put_bytes(store, RAW, b"no comma here\n", kind="lines")
    wait_for(lambda: failures)
    assert store.head(RES) is None
    ev = failures[0]
    assert ev.dataset == RES and ev.extra["source_version"] == bad.version
    assert "no comma" in ev.extra["error"] and ev.extra["stage"] == "results"
    assert bad.version in p.status()[0]["failed"]
    # The next event retries the failure (it fails again), then the new version succeeds,
    # which supersedes the old failure.
    put_bytes(store, RAW, b"a,1\n", kind="lines")
    wait_for(lambda: store.head(RES) is not None)
    assert data(store, RES) == b"a,1\n"
    wait_for(lambda: not p.status()[0]["failed"])
    assert len(failures) == 2


def test_retry_and_never_twice(store: Store, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    stage = Stage("copy", RAW, COND, run=f"test -e {flag} && cat")
    p = Pipelines(store, (stage,))
    v = put_bytes(store, RAW, b"x\n", kind="lines").version
    out = p.process("copy", v)
    assert out.status == "failed" and "exit 1" in (out.error or "")
    assert store.head(COND) is None
    flag.touch()
    outcomes = p.retry()
    assert [o.status for o in outcomes] == ["done", "skipped"]  # failure, then HEAD (same)
    assert p.process("copy", v).status == "skipped"
    assert Pipelines(store, (stage,)).retry("copy")[0].status == "skipped"
    assert len(store.history(COND)) == 1
    assert p.status()[0]["failed"] == {}


def test_unchanged_output_makes_no_version(store: Store) -> None:
    p = Pipelines(store, (Stage("const", RAW, COND, run="echo same"),))
    v1 = put_bytes(store, RAW, b"1\n", kind="lines").version
    v2 = put_bytes(store, RAW, b"2\n", kind="lines").version
    assert p.process("const", v1).status == "done"
    assert p.process("const", v2).status == "unchanged"
    assert len(store.history(COND)) == 1


def test_timeout_and_bad_callables(store: Store) -> None:
    stages = (Stage("slow", RAW, "a", run="sleep 30 | cat", timeout=0.5),
              Stage("missing", RAW, "b", call="no_such_module_xyz:f"),
              Stage("wrongtype", RAW, "c", call="builtins:len"))
    p = Pipelines(store, stages)
    v = put_bytes(store, RAW, b"1\n", kind="lines").version
    t0 = time.monotonic()
    out = p.process("slow", v)
    assert out.status == "failed" and "timed out" in (out.error or "")
    assert time.monotonic() - t0 < 10
    assert "cannot load" in (p.process("missing", v).error or "")
    assert "returned int" in (p.process("wrongtype", v).error or "")
    assert store.datasets() == [RAW]


def test_catch_up_at_start(store: Store, running: list[Pipelines], tmp_path: Path) -> None:
    (tmp_path / "mytransform.py").write_text("def upper(b):\n    return b.upper()\n")
    put_bytes(store, RAW, b"made while down\n", kind="lines")
    start(store, running, Stage("up", RAW, COND, call="mytransform:upper", kind="document"),
          workdir=tmp_path)
    wait_for(lambda: store.head(COND) is not None)
    assert data(store, COND) == b"MADE WHILE DOWN\n"
    assert store.snapshot(store.require_head(COND)).kind == "document"


def test_failures_are_logged_with_dataset_and_version(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    p = Pipelines(store, (Stage("boom", RAW, COND, run="exit 3"),))
    v = put_bytes(store, RAW, b"x\n", kind="lines").version
    with caplog.at_level("INFO", logger="quarry"):
        assert p.process("boom", v).status == "failed"
    rec = next(r for r in caplog.records if r.levelname == "ERROR")
    assert rec.q_dataset == RAW and rec.q_version == v  # type: ignore[attr-defined]
    assert rec.q_stage == "boom"  # type: ignore[attr-defined]
