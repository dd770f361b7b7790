"""What every CLI command shares: output (plain text, tables, compact JSON), options, error
mapping, progress bars.

Output is written with plain ``write`` calls, not through Rich: importing Rich costs about as
much as the rest of a quick command, and its consoles wrap long lines at 80 columns when the
output is not a terminal (a log file, a pipe into grep), breaking paths and JSON apart.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import orjson
import typer

from quarry.errors import BadRequest, InsufficientStorage, QuarryError

if TYPE_CHECKING:
    from quarry.store import Store

PROGRESS_ABOVE = 100 << 20
DEFAULT_DATA = Path("quarry-data")
# Exit code of an error Quarry did not expect (a bug): EX_SOFTWARE of sysexits.h, apart from
# the codes of QuarryError's subclasses (1-11) and of usage errors (2).
EXIT_INTERNAL = 70

DataOpt = Annotated[Path, typer.Option("--data", envvar="QUARRY_HOME",
                                       help="Data folder (default ./quarry-data).")]
IndexOpt = Annotated[str, typer.Option("--index", help="Line index: auto, dense or sparse.")]
BaseOpt = Annotated[int, typer.Option("--index-base", help="Number lines from 0 or 1.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print compact JSON (one object, or one object a line for lists).")]
VersionOpt = Annotated[str | None, typer.Option(
    "--version", "-v", help="Version id, prefix (≥ 5 hex), alias or HEAD; default HEAD.")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="Commit message.")]


def _colour(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and "NO_COLOR" not in os.environ
    except (AttributeError, ValueError):
        return False


def echo(text: str = "") -> None:
    """A line on standard output, never wrapped."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A line on standard error (progress, notes, the next cursor), never wrapped."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _tagged(tag: str, colour: str, text: str) -> None:
    head = f"\x1b[{colour}m{tag}:\x1b[0m" if _colour(sys.stderr) else f"{tag}:"
    note(f"{head} {text}")


def error_line(text: str) -> None:
    _tagged("error", "31", text)


def warn(text: str) -> None:
    _tagged("warning", "33", text)


def _json(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def where_json(text: str) -> dict[str, Any] | None:
    """A ``--where`` written as a JSON object (it starts with ``{``); None for the other
    forms (FIELD=VALUE and the like), which each command reads its own way."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"--where is not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise BadRequest("--where must be a JSON object")
    return parsed


def emit_json(obj: Any) -> None:
    """One compact JSON document on a line."""
    echo(_json(obj))


def emit_json_lines(rows: Iterable[Any]) -> None:
    """A list as JSON lines: one compact object a line, so that a reader can stream it."""
    for r in rows:
        sys.stdout.write(_json(r) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return str(value)  # times (POSIX seconds) among them: no separators
    if isinstance(value, str):
        return value
    return _json(value)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Aligned columns under a header, numbers right-aligned; nothing wider than its text."""
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    right = [bool(cells) and all(re.fullmatch(r"-?[\d,.]+", c[i]) or not c[i] for c in cells)
             for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(values, widths, right, strict=True)).rstrip()

    echo(line(list(headers)))
    for c in cells:
        echo(line(c))


def print_fields(doc: Mapping[str, Any]) -> None:
    """A JSON object as ``key: value`` lines; nested values as compact JSON."""
    width = max((len(k) for k in doc), default=0)
    for k, v in doc.items():
        echo(f"{k + ':':<{width + 1}} {_cell(v)}")


def emit(doc: Any, as_json: bool) -> None:
    """A document as compact JSON, or for people: an object as fields, a list of objects as
    a table (the columns of its first row)."""
    if as_json:
        if isinstance(doc, list):
            emit_json_lines(doc)
        else:
            emit_json(doc)
    elif isinstance(doc, Mapping):
        print_fields(doc)
    elif isinstance(doc, list) and doc and all(isinstance(r, Mapping) for r in doc):
        headers = list(doc[0])
        print_table(headers, [[r.get(h) for h in headers] for r in doc])
    elif isinstance(doc, list):
        for item in doc:
            echo(_cell(item))
    else:
        echo(_cell(doc))


def read_store(data: Path) -> Store:
    """The store at ``data`` for a command that only reads: a missing folder is an error."""
    from quarry.store import Store

    return Store(data, create=False)


def fail(e: QuarryError) -> None:
    error_line(e.detail)
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
        error_line(f"{e.strerror or e}{_named(e)}")
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
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
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
