"""Every endpoint and command of the versions/events/housekeeping areas is documented."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from fastapi import FastAPI
from fastapi.routing import APIRoute

from quarry.cli import events, housekeeping, versions
from quarry.engine import Engine
from quarry.server.routes import events as event_routes
from quarry.server.routes import versions as version_routes
from quarry.server.settings import ServeSettings

DOC = (Path(__file__).resolve().parent.parent / "docs" / "snapshots.md").read_text()


def test_routes_are_documented(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "d")
    for module in (version_routes, event_routes):
        api = FastAPI()
        module.install(api, engine, ServeSettings())
        for route in api.routes:
            if not isinstance(route, APIRoute):
                continue
            path = re.sub(r"\{name:(path|dataset)\}", "<name>", route.path)
            path = re.sub(r"\{(\w+)\}", r"<\1>", path)
            for method in route.methods:
                assert f"`{method} {path}`" in DOC, f"{method} {path} is not in the docs"


def test_commands_are_documented() -> None:
    for module in (versions, events, housekeeping):
        app = typer.Typer()
        module.register(app)
        names = [c.name or (c.callback.__name__ if c.callback else "") for c in
                 app.registered_commands]
        names += [f"{g.name} {c.name}" for g in app.registered_groups
                  for c in (g.typer_instance.registered_commands if g.typer_instance else [])]
        for name in names:
            assert f"`quarry {name}" in DOC, f"quarry {name} is not in the docs"
