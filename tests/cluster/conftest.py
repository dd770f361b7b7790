"""One data folder and one of each backend for the whole session: a pool, a Ray cluster
(slow to start: once), and a real Quarry server process answering as a remote shard."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quarry.cluster import Dispatcher, PoolBackend
from quarry.cluster.backends import InProcessBackend
from quarry.datasets.records import RecordsView
from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.store import Store
from tests.support import free_port, quarry_cmd, running

T0 = 1_600_000_000
SHARDS = 6


def write_logs(path: Path, rows: int, seed: int, span_s: int = 86_400) -> None:
    rng = random.Random(seed)
    v4 = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
          for _ in range(400)]
    v6 = [f"2001:db8::{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}" for _ in range(40)]
    with path.open("w") as f:
        for _ in range(rows):
            ip = rng.choice(v6) if rng.random() < 0.1 else rng.choice(v4)
            f.write(f"{ip},{T0 + rng.random() * span_s:.3f}\n")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``logs``: 24k records in 20 chunks (a tenth IPv6), then an append overlapping them."""
    root = tmp_path_factory.mktemp("cluster")
    store = Store(root / "data")
    write_logs(root / "a.csv", 24_000, 1)
    write_logs(root / "b.csv", 3_000, 2, span_s=40_000)
    ingest(store, "logs", expand_sources([str(root / "a.csv")]), chunk_rows=1_200)
    ingest(store, "logs", expand_sources([str(root / "b.csv")]), chunk_rows=1_000, append=True)
    return root / "data"


@pytest.fixture(scope="session")
def view(data_dir: Path) -> RecordsView:
    return Engine(data_dir).records("logs")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def server(data_dir: Path) -> Iterator[str]:
    """A real Quarry server over the same data folder (a remote shard; it has 3 shards)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(quarry_cmd("serve", "--data", str(data_dir), "--port", str(port),
                            "--shards", "3"), f"{url}/health"):
        yield url


def _make(kind: str, data_dir: Path, request: pytest.FixtureRequest) -> Dispatcher:
    engine = Engine(data_dir)
    if kind == "in-process":
        return Dispatcher(engine, InProcessBackend(engine), shards=SHARDS)
    if kind == "pool":
        backend = PoolBackend(data_dir, 2)
        backend.start()
        return Dispatcher(engine, backend, shards=SHARDS)
    if kind == "ray":
        request.getfixturevalue("ray_cluster")
        from quarry.cluster.ray_backend import RayBackend

        rb = RayBackend(data_dir, SHARDS)
        rb.start()
        return Dispatcher(engine, rb, shards=SHARDS)
    url = request.getfixturevalue("server")
    from quarry.cluster.remote import RemoteBackend

    # Two shards on the one server: each runs its part through that server's own dispatcher.
    return Dispatcher(engine, RemoteBackend(((url,), (url,))), shards=SHARDS)


@pytest.fixture(scope="session", params=[
    "in-process", "pool", pytest.param("ray", marks=pytest.mark.slow), "remote"])
def dispatcher(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[Dispatcher]:
    d = _make(request.param, data_dir, request)
    yield d
    d.close()
