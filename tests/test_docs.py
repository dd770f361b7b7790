"""Documentation is part of the product: every route and command must be documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute

from quarry.cli import app as cli_app
from quarry.engine import Engine
from quarry.server.app import create_app
from quarry.server.settings import ServeSettings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _normalise(path: str) -> str:
    # /datasets/{name:path}/lines/{n} -> /datasets/<>/lines/<>
    return re.sub(r"\{[^}]+\}|<[^>]+>", "<>", path)


def test_every_route_is_documented(tmp_path: Path) -> None:
    app = create_app(Engine(tmp_path), ServeSettings(data=str(tmp_path)))
    documented = {_normalise(m) for m in re.findall(r"`(?:GET|PUT|POST|DELETE) ([^`?]+)",
                                                      (DOCS / "http.md").read_text())}
    missing = []
    for route in app.api.routes:
        if (isinstance(route, APIRoute) and route.include_in_schema
                and _normalise(route.path) not in documented):
            missing.append(route.path)
    assert not missing, f"routes missing from docs/http.md: {missing}"


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    names = [c.name or (c.callback.__name__ if c.callback else "")
             for c in cli_app.registered_commands]
    names += [g.name or "" for g in cli_app.registered_groups]
    missing = [n for n in names if f"`quarry {n}" not in text]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_every_option_is_documented() -> None:
    import typer.main

    text = (DOCS / "cli.md").read_text()
    missing: list[str] = []

    def walk(command: Any, name: str) -> None:
        # typer's commands are its own click's (not the installed click's): duck-typed.
        subs = getattr(command, "commands", None)
        if subs is not None:
            for sub_name, sub in subs.items():
                walk(sub, f"{name} {sub_name}")
            return
        for p in command.params:
            forms = [*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ())]
            # Documented under any of its forms (`-m MSG`, `--no-checkpoints`).
            if forms[0].startswith("-") and not any(
                    re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text) for f in forms):
                missing.append(f"{name} {forms[0]}")

    walk(typer.main.get_command(cli_app), "quarry")
    assert len(missing) == 0, f"options missing from docs/cli.md: {missing}"
