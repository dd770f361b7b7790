"""Shard lifecycle: awake within a memory budget, least recently used fall asleep, shards put
to sleep by hand stay asleep; and the core never imports adapters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from quarry.cluster import Dispatcher
from quarry.datasets.records import RecordsView
from quarry.engine import Engine
from quarry.errors import InsufficientStorage, MissingExtra, NotFound
from quarry.query.model import DistinctQuery, Window
from tests.cluster.conftest import T0


def _states(d: Dispatcher) -> dict[str, str]:
    return {s["id"]: s["state"] for s in d.status()["shards"]}


def test_least_recently_used_fall_asleep_within_budget(data_dir: Path) -> None:
    engine = Engine(data_dir)
    view = engine.records("logs")
    probe = Dispatcher(engine, shards=4)
    specs = probe.layout(view)
    budget = specs[0].index_bytes + specs[1].index_bytes + 1
    d = Dispatcher(engine, shards=4, memory_budget=budget)
    d.layout(view)
    assert set(_states(d).values()) == {"asleep"}
    for s in specs:  # one query per shard, in order: only the last ones stay awake
        lo = s.ts_range[0]
        assert d.run(view, DistinctQuery(Window(lo, lo))).shards >= 1
    st = _states(d)
    assert [st[s.id] for s in specs].count("awake") <= 2
    assert st[specs[-1].id] == "awake" and st[specs[0].id] == "asleep"
    assert d.status()["memory_bytes"] <= budget
    with pytest.raises(InsufficientStorage):
        _too_big(engine, view)


def _too_big(engine: Engine, view: RecordsView) -> None:
    d = Dispatcher(engine, shards=1, memory_budget=10)
    d.layout(view)
    d.wake(d.layout(view)[0].id)


def test_sleep_by_hand_holds_until_woken(data_dir: Path) -> None:
    engine = Engine(data_dir)
    view = engine.records("logs")
    d = Dispatcher(engine, shards=3)
    sid = d.layout(view)[1].id
    everything = DistinctQuery(Window(), 5)
    d.run(view, everything)
    assert _states(d)[sid] == "awake"
    s = d.sleep(sid)
    assert s["state"] == "asleep" and s["held_asleep"] and s["memory_bytes"] == 0
    chunks = [c for c in view.chunks if c.position in d.layout(view)[1].chunks]
    assert not any(c.index_loaded for c in chunks)
    d.run(view, everything)
    assert _states(d)[sid] == "asleep"
    assert not any(c.index_loaded for c in chunks)  # answered by scanning
    w = d.wake(sid)
    assert w["state"] == "awake" and w["memory_bytes"] > 0
    assert all(c.index_loaded for c in chunks)
    load = next(s for s in d.status()["shards"] if s["id"] == sid)["load"]
    assert load["queries"] == 2 and load["inflight"] == 0 and load["busy_seconds"] > 0
    with pytest.raises(NotFound):
        d.wake("logs@nothing/9")


def test_windows_before_the_data_ask_no_shard(data_dir: Path) -> None:
    engine = Engine(data_dir)
    d = Dispatcher(engine, shards=4)
    a = d.query("logs", DistinctQuery(Window(1, (T0 - 10) * 10**6)))
    assert a.shards == 0 and a.result.distinct == 0


def test_core_imports_no_adapter() -> None:
    code = ("import sys, quarry.cluster, quarry.cluster.dispatcher, quarry.cluster.backends; "
            "bad = [m for m in ('fastapi', 'typer', 'rich', 'zmq', 'ray', 'httpx') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ray_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from quarry.cluster import ray_backend

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(MissingExtra) as e:
        ray_backend.import_ray()
    assert "pip install quarry[ray]" in e.value.detail
