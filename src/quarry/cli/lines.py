"""Commands for line datasets and the server: put, get, ls, info, serve."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarry.cli.common import (
    DEFAULT_DATA,
    BaseOpt,
    DataOpt,
    IndexOpt,
    JsonOpt,
    MessageOpt,
    VersionOpt,
    check_base,
    dataset_name_for,
    echo,
    emit,
    emit_json,
    errors,
    note,
    print_table,
    progress_bar,
    read_store,
    warn,
)
from quarry.cli.shards import (
    BudgetOpt,
    OnErrorOpt,
    RayAddressOpt,
    RayOpt,
    RemoteOpt,
    ReplicasOpt,
    ShardsOpt,
    ShardWorkersOpt,
    TimeoutOpt,
    check_backend,
    parse_size,
)
from quarry.defaults import DEFAULT_SHARDS
from quarry.errors import BadRequest
from quarry.server.settings import ServeSettings

if TYPE_CHECKING:
    from quarry.store import CommitResult, Store

SERVE = ServeSettings()  # the defaults
HeaderTimeoutOpt = Annotated[float, typer.Option(
    "--header-timeout", min=0.001,
    help="Seconds from a request's first byte to the end of its headers.")]
BodyTimeoutOpt = Annotated[float, typer.Option(
    "--body-timeout", min=0.001, help="Seconds a request body may pause between two reads.")]
KeepAliveOpt = Annotated[float, typer.Option(
    "--keep-alive-timeout", min=0.001,
    help="Seconds a connection may stay idle before its first request and between requests.")]


def _put_file(store: Store, name: str, file: Path, link: bool, index: str,
              message: str) -> CommitResult:
    from quarry.datasets.lines import put_lines, put_lines_stream
    from quarry.store.refs import check_dataset_name

    check_dataset_name(name)
    if str(file) == "-":
        if link:
            raise BadRequest("--link needs a file, not standard input")
        blocks = iter(lambda: sys.stdin.buffer.read(8 << 20), b"")
        return put_lines_stream(store, name, blocks, mode=index, message=message)
    size = file.stat().st_size if file.is_file() else 0
    with progress_bar(size, f"indexing {file.name}") as progress:
        return put_lines(store, name, file, link=link, mode=index, message=message,
                         progress=progress)


def commit_json(res: CommitResult) -> dict[str, Any]:
    """A commit's outcome for --json: what put and ingest commands print."""
    meta = res.snapshot.meta
    doc: dict[str, Any] = {"dataset": res.snapshot.dataset, "version": res.version,
                           "created": res.created, "kind": res.snapshot.kind,
                           "size": res.snapshot.size}
    doc.update({k: meta[k] for k in ("lines", "rows") if k in meta})
    if "chunks" in meta:
        doc["chunks"] = len(meta["chunks"])
    return doc


def _report(res: CommitResult, as_json: bool = False) -> None:
    if as_json:
        emit_json(commit_json(res))
        return
    lines = res.snapshot.meta.get("lines")
    what = "new version" if res.created else "unchanged, no new version"
    count = f", {lines:,} line{'' if lines == 1 else 's'}" if lines is not None else ""
    echo(f"{res.snapshot.dataset}: {what} {res.version[:12]} "
         f"({res.snapshot.size} bytes{count})")


def _clean(store: Store) -> None:
    """Remove temp files that killed writers left (they pile up: hundreds of MB each)."""
    stale = store.clean_tmp()
    if stale.count:
        note(f"removed {stale.count} stale temp file(s) of dead writers "
             f"({stale.bytes:,} bytes)")


def _demo_file() -> Path:
    return Path(str(resources.files("quarry") / "demo" / "frankenstein.txt"))


def register(app: typer.Typer) -> None:
    @app.command()
    def put(
        name: Annotated[str, typer.Argument(help="Dataset name, e.g. weblogs or qplan/raw.")],
        file: Annotated[Path, typer.Argument(help="Text file to add ('-' for standard input).")],
        link: Annotated[bool, typer.Option(
            "--link", help="Index the file in place, no copy.")] = False,
        index: IndexOpt = "auto",
        message: MessageOpt = "",
        kind: Annotated[str | None, typer.Option(
            "--kind", help="lines or document (default: the dataset's kind, else lines).")] = None,
        if_match: Annotated[str | None, typer.Option(
            "--if-match", help="Fail (exit 4) unless HEAD is this version.")] = None,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Add FILE as a new version of dataset NAME."""
        from quarry.cli.versions import put_version
        from quarry.store import Store
        from quarry.store.refs import check_dataset_name

        with errors():
            store = Store(data)
            _clean(store)
            if kind not in (None, "lines") or if_match is not None or (
                    kind is None and store.head(check_dataset_name(name)) is not None
                    and store.snapshot(store.require_head(name)).kind != "lines"):
                _report(put_version(store, name, file, kind, message, if_match, index, link),
                        as_json)
                return
            _report(_put_file(store, name, file, link, index, message), as_json)


    @app.command()
    def get(
        name: str,
        n: Annotated[str, typer.Argument(help="Line number.")],
        count: Annotated[int, typer.Option(
            "--count", "-c", min=1, max=1_000_000, help="Lines to print from N.")] = 1,
        version: VersionOpt = None,
        index_base: BaseOpt = 1,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Print line N of dataset NAME (or COUNT lines from N)."""
        from quarry.datasets.lines import parse_line_number
        from quarry.engine import Engine

        with errors():
            view = Engine(read_store(data)).lines(name, version)
            i = parse_line_number(n, check_base(index_base))
            first = view.line(i, index_base)
            if count == 1:
                sys.stdout.buffer.write(first + b"\n")
            else:
                for piece in view.index.iter_text(i, count):
                    sys.stdout.buffer.write(piece)
            sys.stdout.flush()


    @app.command("ls")
    def list_datasets(
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """List datasets with their kind, size and version."""
        # The catalog reads refs and manifests only: listing opens no dataset, so it loads
        # neither numpy nor pyarrow.
        from quarry import catalog

        with errors():
            rows = catalog.datasets(read_store(data))
            if as_json:
                emit(rows, as_json)
                return
            if not rows:
                echo(f"no datasets in {data} (add one with `quarry put NAME FILE`)")
                return
            print_table(["name", "kind", "version", "size", "lines / rows", "versions"],
                        [[r["name"], r["kind"], r["version"][:12], r["size"],
                          r.get("lines", r.get("rows")), r["versions"]] for r in rows])

    @app.command()
    def info(name: str, as_json: JsonOpt = False, data: DataOpt = DEFAULT_DATA) -> None:
        """Show a dataset's metadata (--json: as one JSON object)."""
        from quarry import catalog

        with errors():
            emit(catalog.describe(read_store(data), name), as_json)



    @app.command()
    def serve(
        file: Annotated[Path | None, typer.Argument(
            help="Text file to serve (added first).")] = None,
        data: DataOpt = DEFAULT_DATA,
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
        workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
        index_base: BaseOpt = 1,
        name: Annotated[str | None, typer.Option("--name", help="Dataset name for FILE.")] = None,
        default: Annotated[str | None, typer.Option(
            "--default", help="Dataset answered by /lines/<n>.")] = None,
        link: Annotated[bool, typer.Option("--link", help="Index FILE in place.")] = False,
        index: IndexOpt = "auto",
        demo: Annotated[bool, typer.Option("--demo", help="Serve the bundled demo file.")] = False,
        token: Annotated[str | None, typer.Option(
            "--token", envvar="QUARRY_TOKEN",
            help="Bearer token for writes (required for writes beyond loopback).")] = None,
        closed: Annotated[list[str] | None, typer.Option(
            "--closed", help="Dataset whose reads need the token (repeatable).")] = None,
        log_format: Annotated[str, typer.Option("--log-format", help="text or json")] = "text",
        log_level: Annotated[str, typer.Option("--log-level")] = "info",
        shards: ShardsOpt = DEFAULT_SHARDS,
        shard_workers: ShardWorkersOpt = 0,
        ray: RayOpt = False,
        ray_address: RayAddressOpt = None,
        remote: RemoteOpt = None,
        replicas: ReplicasOpt = 1,
        on_shard_error: OnErrorOpt = "fail",
        shard_timeout: TimeoutOpt = 30.0,
        memory_budget: BudgetOpt = None,
        header_timeout: HeaderTimeoutOpt = SERVE.header_timeout,
        body_timeout: BodyTimeoutOpt = SERVE.body_timeout,
        keep_alive_timeout: KeepAliveOpt = SERVE.keep_alive_timeout,
    ) -> None:
        """Serve FILE and every dataset in the data folder over HTTP."""
        from quarry.server.runner import check_listen, run
        from quarry.store import Store

        with errors():
            check_base(index_base)
            check_listen(host, port)
            store = Store(data)
            _clean(store)
            heads, damaged = store.heads()
            for bad, why in damaged.items():
                note(f"skipped dataset {bad}: {why}")
            if demo and file is None:
                file = _demo_file()
                name = name or "demo"
            if file is not None:
                name = name or dataset_name_for(file)
                _report(_put_file(store, name, file, link, index, "added by quarry serve"))
                default = default or name
            if file is not None:
                heads = store.heads()[0]
            if default is None:
                lines = [d for d, snap in heads.items() if snap.kind == "lines"]
                default = lines[0] if len(lines) == 1 else None
            if default is not None:
                store.require_head(default)
            if log_format not in ("text", "json"):
                raise BadRequest(f"--log-format must be text or json, got {log_format!r}")
            if log_level.lower() not in ("debug", "info", "warning", "error"):
                raise BadRequest("--log-level must be debug, info, warning or error")
            settings = ServeSettings(data=str(data.resolve()), host=host, port=port,
                                     workers=workers, index_base=index_base,
                                     default_dataset=default, token=token,
                                     closed=tuple(closed or ()), log_format=log_format,
                                     log_level=log_level.lower(), shards=shards,
                                     shard_workers=shard_workers, ray=ray,
                                     ray_address=ray_address, remote=tuple(remote or ()),
                                     replicas=replicas, on_shard_error=on_shard_error,
                                     shard_timeout=shard_timeout,
                                     memory_budget=parse_size(memory_budget),
                                     header_timeout=header_timeout,
                                     body_timeout=body_timeout,
                                     keep_alive_timeout=keep_alive_timeout)
            check_backend(shard_workers, ray, ray_address, remote, on_shard_error, workers)
            if token is None and host not in ("127.0.0.1", "localhost", "::1"):
                warn("listening beyond loopback without --token: every write will be refused")
            echo(f"serving {len(heads)} dataset(s) from {data} on "
                 f"http://{host}:{port} (default: {default or 'none'}; "
                 f"{workers} worker(s); API docs at /docs)")
        run(settings)
