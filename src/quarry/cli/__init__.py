"""The ``quarry`` command. Each module of this package registers its commands on ``app``."""

from __future__ import annotations

from typing import Any

import typer

from quarry.cli import (
    api,
    events,
    find,
    housekeeping,
    ingest,
    keyed,
    lines,
    shards,
    stats,
    versions,
)

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Quarry: serve big, immutable, versioned datasets fast.")

# ingest before api: api adds its subcommand to the ``ingest`` group.
for module in (lines, versions, events, housekeeping, ingest, find, keyed, api, stats, shards):
    module.register(app)


def main() -> Any:
    return app()
