"""What every CLI command shares: consoles, options, error mapping, progress bars."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from quarry.errors import BadRequest, InsufficientStorage, QuarryError
from quarry.store import Store

out = Console()
err = Console(stderr=True)

PROGRESS_ABOVE = 100 << 20
DEFAULT_DATA = Path("quarry-data")

DataOpt = Annotated[Path, typer.Option("--data", envvar="QUARRY_HOME",
                                       help="Data folder (default ./quarry-data).")]
IndexOpt = Annotated[str, typer.Option("--index", help="Line index: auto, dense or sparse.")]
BaseOpt = Annotated[int, typer.Option("--index-base", help="Number lines from 0 or 1.")]


def read_store(data: Path) -> Store:
    """The store at ``data`` for a command that only reads: a missing folder is an error."""
    return Store(data, create=False)


def fail(e: QuarryError) -> None:
    # soft_wrap: an error names paths and lines users grep for and copy, so rich must not
    # break it at the terminal width; escape: a detail may hold brackets rich reads as markup.
    err.print(f"[red]error:[/red] {escape(e.detail)}", highlight=False, soft_wrap=True)
    raise typer.Exit(e.exit_code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn Quarry errors into a message on stderr and the error's exit code."""
    try:
        yield
    except QuarryError as e:
        fail(e)
    except BrokenPipeError as e:
        if not _stdout_gone():
            fail(QuarryError(f"broken pipe: {e}"))  # another pipe (a worker's), a real error
        # The reader went away (`quarry get ... | head`): end quietly, as a process that
        # SIGPIPE stopped would, and keep Python from complaining again at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(128 + signal.SIGPIPE) from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            fail(InsufficientStorage(f"no space left on device{_named(e)}"))
        what = f"{e.strerror or e}{_named(e)}"
        err.print(f"[red]error:[/red] {escape(what)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _stdout_gone() -> bool:
    """Whether standard output is a pipe nobody reads any more (poll reports an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def _named(e: OSError) -> str:
    return f": {e.filename}" if e.filename else ""


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A byte progress bar on stderr for work over ~100 MB; None (no bar) below that."""
    if total < PROGRESS_ABOVE:
        yield None
        return
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def dataset_name_for(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._") or "lines"
    if not stem[0].isalnum():
        stem = "f" + stem
    return stem[:100]


def check_base(index_base: int) -> int:
    if index_base not in (0, 1):
        raise BadRequest(f"--index-base must be 0 or 1, got {index_base}")
    return index_base
