from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from quarry.engine import Engine
from quarry.server.app import create_app
from quarry.server.settings import ServeSettings
from quarry.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


@pytest.fixture
def engine(store: Store) -> Engine:
    return Engine(store, refresh_interval=0.0)


def make_client(engine: Engine, **settings: object) -> TestClient:
    s = ServeSettings(data=str(engine.store.root), **settings)  # type: ignore[arg-type]
    return TestClient(create_app(engine, s), raise_server_exceptions=True)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with make_client(engine) as c:
        yield c
