"""The ``quarry`` command. Each module of this package registers its commands on ``app``.

Start-up time is part of the interface: a command's module imports only the standard
library, typer and Quarry's light modules at the top; numpy, pyarrow, FastAPI, uvicorn,
aiohttp and ZeroMQ are imported inside the commands that use them (tests/cli/test_startup.py
holds this).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

import quarry
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
from quarry.cli.common import EXIT_INTERNAL, error_line

try:  # recent typer carries its own copy of click, whose exceptions its parser raises
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer, the installed click
    from click.exceptions import ClickException  # type: ignore[assignment]

DEBUG_ENV = "QUARRY_DEBUG"


def _debug_asked(args: Sequence[str]) -> bool:
    """--debug before the command, or QUARRY_DEBUG set: read before click parses anything,
    since an error may come from parsing itself."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return True
    for a in args:
        if a == "--debug":
            return True
        if not a.startswith("-"):
            return False  # the command's own arguments start here
    return False


class QuarryGroup(TyperGroup):
    """Maps every failure to one ``error: ...`` line and an exit code (docs/cli.md): usage
    errors (2), Quarry's errors (their own codes, in the commands), and anything unexpected
    (70, the traceback only with --debug)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = _debug_asked(argv)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)
        except ClickException as e:
            where = e.ctx.command_path if getattr(e, "ctx", None) else "quarry"  # type: ignore[attr-defined]
            error_line(f"{e.format_message()} (see `{where} --help`)")
            code = e.exit_code
        except typer.Abort:
            error_line("aborted")
            code = 1
        except Exception as e:
            if debug:
                raise
            error_line(f"unexpected {type(e).__name__}: {e} (a bug; run with --debug for "
                       "the traceback)")
            code = EXIT_INTERNAL
        else:
            code = rv if isinstance(rv, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"quarry {quarry.__version__}")
        raise typer.Exit()


app = typer.Typer(cls=QuarryGroup, no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Quarry: serve big, immutable, versioned datasets fast.")


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_version,
        help="Print quarry's version and exit.")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help=f"Show the traceback of an unexpected error (also ${DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Quarry: serve big, immutable, versioned datasets fast."""


# ingest before api: api adds its subcommand to the ``ingest`` group.
for module in (lines, versions, events, housekeeping, ingest, find, keyed, api, stats, shards):
    module.register(app)


def main() -> NoReturn:
    app()
    sys.exit(0)  # QuarryGroup.main exits itself; this keeps the signature honest
