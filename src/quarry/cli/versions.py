"""Commands for versions of any kind: cat, versions, alias (and ``put --kind``'s path)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarry.cli.common import (
    DEFAULT_DATA,
    DataOpt,
    JsonOpt,
    VersionOpt,
    echo,
    emit,
    emit_json,
    errors,
    print_table,
    read_store,
)
from quarry.errors import BadRequest, NotFound, PreconditionFailed

if TYPE_CHECKING:
    from quarry.store import CommitResult, Store

BLOCK = 8 << 20


def put_version(store: Store, name: str, file: Path, kind: str | None, message: str,
                if_match: str | None, index: str = "auto", link: bool = False) -> CommitResult:
    """Stream FILE (or stdin for '-') into a new version through the kind registry."""
    from quarry.datasets.kinds import WriteOptions, kind_for_put
    from quarry.store.refs import check_dataset_name

    check_dataset_name(name)
    if link:
        raise BadRequest("--link works for new lines versions only, without --if-match")
    k = kind_for_put(store, name, kind, "lines")
    kw: dict[str, Any] = {}
    if if_match is not None:
        head = store.head(name)
        try:
            kw["expected_parent"] = store.resolve(name, if_match) if head else if_match
        except NotFound:
            raise PreconditionFailed(f"{name} has no version {if_match[:40]!r}",
                                     current=head) from None
    stdin = str(file) == "-"
    size = None if stdin else file.stat().st_size
    writer = k.writer(store, name, WriteOptions(message=message, size_hint=size,
                                                params={"index": index}))
    try:
        with (open(file, "rb") if not stdin else sys.stdin.buffer) as f:
            while block := f.read(BLOCK):
                writer.write(block)
    except BaseException:
        writer.abort()
        raise
    return writer.commit(**kw)


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def register(app: typer.Typer) -> None:
    @app.command()
    def cat(
        name: str,
        version: VersionOpt = None,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Print the whole data of dataset NAME at a version."""
        from quarry.engine import Engine

        with errors():
            _, _, d = Engine(read_store(data)).data(name, version)
            for block in d.iter_bytes():
                sys.stdout.buffer.write(block)
            sys.stdout.flush()

    @app.command()
    def versions(
        name: str,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Show the history of dataset NAME, newest first."""
        from quarry.versions import version_json

        with errors():
            store = read_store(data)
            store.require_head(name)
            aliases = store.refs.aliases(name)
            by_version: dict[str, list[str]] = {}
            for a, v in aliases.items():
                by_version.setdefault(v, []).append(a)
            rows = [version_json(v, s, by_version.get(v, []))
                    for v, s in store.history(name, limit)]
            if as_json:
                emit(rows, as_json)
                return
            print_table(["version", "time (UTC)", "size", "aliases", "message", "lineage"],
                        [[r["version"][:12], _time(r["created"]), r["size"],
                          ",".join(r["aliases"]), r["message"],
                          ", ".join(f"{x.get('dataset')}@{str(x.get('version'))[:12]}"
                                    for x in r["lineage"])] for r in rows])

    @app.command()
    def alias(
        name: str,
        alias: str,
        version: Annotated[str | None, typer.Argument(
            help="Version to point at (default HEAD).")] = None,
        delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Point ALIAS of dataset NAME at a version (moves atomically), or delete it."""
        with errors():
            store = read_store(data)
            if delete:
                store.require_head(name)
                prev = store.delete_alias(name, alias)
                if as_json:
                    emit_json({"dataset": name, "alias": alias, "version": None,
                               "previous": prev})
                else:
                    echo(f"{name}: alias {alias} removed (was {prev[:12]})")
                return
            target = store.set_alias(name, alias, version)
            if as_json:
                emit_json({"dataset": name, "alias": alias, "version": target})
            else:
                echo(f"{name}: {alias} -> {target[:12]}")
